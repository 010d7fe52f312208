local _M = {}
local count = 0
function _M.handler(sig) count = count + 1 end
return _M
