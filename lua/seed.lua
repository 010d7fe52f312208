-- The Lua example of uWSGI's signal framework docs, with its typo fixed
-- (the original ends the concatenation with a stray `..`).
function hello_signal(sig)
    print("i am Lua, received signal " .. sig)
end

-- define a single signal table item (signal 1)
uwsgi.register_signal(1, "worker", hello_signal)
