-- The Lua half of samples/mixed.  The file returns a table of handlers (the
-- `lua:PATH:FUNCTION` references name its fields) and registers one more in code.
local _M = {}

function _M.pong(sig)
    print("lua: worker " .. uwsgi.worker_id() .. " got " .. sig .. ", raising 12 for Python")
    uwsgi.signal(12)
end

-- Registered from Lua, handled in Lua: a Python handler may raise it too.
uwsgi.register_signal(13, "worker2", function(sig)
    print("lua: worker " .. uwsgi.worker_id() .. " got " .. sig .. " (a Lua closure)")
end)

return _M
