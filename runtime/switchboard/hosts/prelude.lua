-- Switchboard's Lua glue: the `uwsgi` table, the guarded call, print.
-- Loaded once per runtime by hosts/lua.py; handler code never sees this table.
local _M = {}

local sethook, traceback, clock = debug.sethook, debug.traceback, os.clock
local budget, deadline = 0, nil

local function on_count()
    if deadline ~= nil and clock() > deadline then
        error(string.format("stopped: exceeded lua-budget of %g s", budget), 2)
    end
end

-- Call a handler under xpcall (Lua traceback on error) and, when a budget is set,
-- under the deadline the count hook enforces.
function _M.call(f, ...)
    local outer = deadline
    if budget > 0 then deadline = clock() + budget end
    local ok, err = xpcall(f, traceback, ...)
    deadline = outer
    return ok, err
end

function _M.describe(f)
    local info = debug.getinfo(f, "S")
    return string.format("lua function at %s:%d", info.short_src, info.linedefined)
end

-- API functions from Python return (ok, value); misuse becomes a Lua error at the caller.
-- `uwsgi:signal(5)` (a colon, as for a method) passes the table itself first: say so.
local function wrap(uwsgi, name, f)
    local colon = string.format("call uwsgi.%s with a dot, not uwsgi:%s (a colon passes "
                                .. "the uwsgi table as the first argument)", name, name)
    return function(...)
        if rawequal((...), uwsgi) then error(colon, 2) end
        local ok, value = f(...)
        if not ok then error(value, 2) end
        return value
    end
end

function _M.setup(api, write, seconds)
    local uwsgi = {}
    for name, f in pairs(api) do uwsgi[name] = wrap(uwsgi, name, f) end
    _G.uwsgi = uwsgi
    _G.print = function(...)
        local parts = {}
        for i = 1, select("#", ...) do parts[i] = tostring((select(i, ...))) end
        write(table.concat(parts, "\t"))
    end
    budget = seconds
    if seconds > 0 then
        if jit then jit.off() end          -- LuaJIT runs no hooks in compiled code
        sethook(on_count, "", 10000)
        debug.sethook = function()
            error("debug.sethook is reserved by Switchboard while lua-budget is set", 2)
        end
    end
end

return _M
