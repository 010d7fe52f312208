"""Binding the `uwsgi` API to a process: the runtime's side, kept off the `uwsgi` module.

User code sees `uwsgi` (api.py) and `uwsgidecorators` (decorators.py); what only the
runtime calls (installing them, running the postfork chain) lives here, so neither is a
public name of `uwsgi`, as in uWSGI.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from switchboard import api, decorators
from switchboard.context import Context, set_current
from switchboard.hosts import lua
from switchboard.targets import Role

# uWSGI runs the postfork chain in these only (not in our sources helper)
POSTFORK_ROLES = (Role.WORKER, Role.MULE, Role.SPOOLER)


def install(ctx: Context) -> None:
    """Bind the API to this process and make it importable as `uwsgi`/`uwsgidecorators`."""
    api._ctx = ctx
    set_current(ctx)
    api.numproc = ctx.topology.workers
    api.spoolers = (ctx.spool_dir.encode(),) if ctx.spool_dir else ()
    api.decorators = decorators       # type: ignore[attr-defined]  # uWSGI's alias
    sys.modules["uwsgi"] = api
    sys.modules["uwsgidecorators"] = decorators
    decorators.install_hooks()        # as importing uWSGI's uwsgidecorators does
    lua.use_api(api)


def run_postfork_hooks() -> list[Callable[[], object]]:
    """Run `@postfork` functions and `uwsgi.post_fork_hook` in a freshly forked child.

    What `@mule`, `@muleloop`, `@mulemsg` and `@farm` put in the chain is this mule's
    program, not boot work: returned, to run once the mule is up (uWSGI runs it in
    place, and a mule that never returns from its postfork chain is never ready here).
    """
    if api._context().role not in POSTFORK_ROLES:
        return []
    programs: list[Callable[[], object]] = []
    for func in decorators.postfork_chain:
        if isinstance(func, decorators.MuleProgram):
            if func.runs_here():
                programs.append(func)
        else:
            func()
    hook = api.post_fork_hook
    if hook is not None and hook is not decorators.postfork_chain_hook:   # ran just above
        hook()
    return programs
