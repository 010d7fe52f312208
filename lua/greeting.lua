-- Edit this file while samples/events runs: every worker reloads it.
return { text = "hello from greeting.lua" }
