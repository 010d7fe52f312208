-- samples/events, the Lua side: a greeting reloaded whenever lua/greeting.lua changes.
local here = (...):match("(.*/)")        -- a script gets its own absolute path as `...`
local _M = {}
local greeting = dofile(here .. "greeting.lua")

function _M.greet(sig)
    print("lua: worker " .. uwsgi.worker_id() .. " says: " .. greeting.text)
end

function _M.reload(sig)
    greeting = dofile(here .. "greeting.lua")
    print("lua: worker " .. uwsgi.worker_id() .. " reloaded greeting.lua: " .. greeting.text)
end

return _M
