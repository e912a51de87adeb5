"""The ``ssh`` launch method: start, stop and restart a node's agent over SSH.

For a node of ``config/cluster.yaml`` with ``launch.method: ssh``, the orchestrator runs

    ssh -p <port> [-i <identity_file>] -o BatchMode=yes [<options>...] [<user>@]<host> <script>

where the script starts ``launch.command`` (``{node}`` ``{roles}`` ``{connect}`` ``{creds}``
``{run}`` filled in: the node's name, its agent roles comma-joined, every server's URL, its
credentials file as written by ``jetzero cluster credentials`` — copy it to the same path on
the node — and the run) in a session of its own, detached, its output in
``<state_dir>/agent-<node>.log`` and its pid in ``<state_dir>/agent-<node>.pid``. ``stop``
sends SIGTERM to that session (the agent records ``node.left``), SIGKILL after
``STOP_WAIT_S``; ``running`` asks whether the pid is alive. ``jetzero cluster up`` starts the
ssh nodes' agents, ``cluster down`` stops them, and ``cluster heal`` (and the orchestrator's
rounds) restarts those that are not running and those that joined but went silent.
A node whose ssh fails is reported with ssh's own last line; nothing is retried here.
"""

from __future__ import annotations

import asyncio
import shlex

from handlers.cluster import credentials
from handlers.cluster.agent import AGENT_ROLES
from handlers.cluster.config import ClusterConfig, Launch, Node
from handlers.cluster.singletons import ROLE_SERVICES
from streams.errors import LaunchFailed

__all__ = ["SSH_TIMEOUT_S", "STOP_WAIT_S", "SshLauncher", "restart_stopped", "start_agents",
           "stop_agents"]

SSH_TIMEOUT_S = 30.0
STOP_WAIT_S = 10  # seconds a stopped agent has to leave before SIGKILL


# A shell function: the pid runs (a zombie left for an init that does not reap counts as gone).
_ALIVE = ('alive() { kill -0 "$1" 2>/dev/null && '
          '[ "$(sed -n \'s/.*) \\(.\\).*/\\1/p\' /proc/"$1"/stat 2>/dev/null)" != Z ]; }; ')


def _remote_path(path: str) -> str:
    """A shell word for ``path``, with a leading ``~/`` left to the remote shell."""
    if path == "~" or path.startswith("~/"):
        return '"$HOME"' + (shlex.quote(path[1:]) if len(path) > 1 else "")
    return shlex.quote(path)


def _agent_role(role: str) -> bool:
    return role in AGENT_ROLES or role in ROLE_SERVICES


class SshLauncher:
    """Start / stop / restart the agents of ``cfg``'s ssh nodes."""

    def __init__(self, cfg: ClusterConfig):
        self.cfg = cfg

    def nodes(self) -> list[Node]:
        return [n for n in self.cfg.nodes if n.launch.method == "ssh"]

    def node(self, name: str) -> Node | None:
        return next((n for n in self.nodes() if n.name == name), None)

    # -- the scripts ------------------------------------------------------------------------

    def agent_command(self, node: Node) -> str:
        roles = ",".join(r for r in node.roles if _agent_role(r))
        creds = credentials.role_file(self.cfg.credentials_dir.resolve(), credentials.node_user(node.name))
        return node.launch.command.format(node=node.name, roles=roles, run=self.cfg.run,
                                          connect=",".join(self.cfg.nats.server_urls()), creds=creds)

    def _files(self, node: Node) -> tuple[str, str, str]:
        base = node.launch.state_dir.rstrip("/") or "/"
        folder = _remote_path(base)
        pid, log = (_remote_path(f"{base}/agent-{node.name}.{ext}") for ext in ("pid", "log"))
        return folder, pid, log

    def start_script(self, node: Node) -> str:
        folder, pid, out = self._files(node)
        command = shlex.quote(self.agent_command(node))
        return (f"{_ALIVE}mkdir -p {folder} && if [ -f {pid} ] && alive \"$(cat {pid})\"; "
                f"then echo \"running pid $(cat {pid})\"; else "
                f"setsid sh -c {command} >> {out} 2>&1 < /dev/null & echo $! > {pid}; "
                f"echo \"started pid $(cat {pid})\"; fi")

    def stop_script(self, node: Node) -> str:
        _, pid, _ = self._files(node)
        return (f"{_ALIVE}if [ -f {pid} ] && alive \"$(cat {pid})\"; then p=$(cat {pid}); "
                f"kill -TERM -- -$p 2>/dev/null || kill -TERM $p; i=0; "
                f"while alive $p && [ $i -lt {STOP_WAIT_S * 10} ]; "
                f"do sleep 0.1; i=$((i+1)); done; "
                f"if alive $p; then kill -KILL -- -$p 2>/dev/null || kill -KILL $p; "
                f"echo \"killed pid $p\"; else echo \"stopped pid $p\"; fi; rm -f {pid}; "
                f"else rm -f {pid}; echo 'not running'; fi")

    def running_script(self, node: Node) -> str:
        _, pid, _ = self._files(node)
        return (f"{_ALIVE}if [ -f {pid} ] && alive \"$(cat {pid})\"; "
                f"then echo \"running pid $(cat {pid})\"; else echo 'not running'; fi")

    def ssh_argv(self, node: Node, script: str) -> list[str]:
        launch: Launch = node.launch
        argv = ["ssh", "-p", str(launch.port)]
        if launch.identity_file:
            argv += ["-i", launch.identity_file]
        argv += ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={int(SSH_TIMEOUT_S)}", *launch.options]
        argv += [f"{launch.user}@{node.host}" if launch.user else node.host, script]
        return argv

    # -- running them -----------------------------------------------------------------------

    async def _ssh(self, node: Node, script: str) -> str:
        proc = await asyncio.create_subprocess_exec(
            *self.ssh_argv(node, script), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            out, err = await asyncio.wait_for(proc.communicate(), SSH_TIMEOUT_S + STOP_WAIT_S)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise LaunchFailed(f"ssh to {node.host} did not finish in "
                               f"{SSH_TIMEOUT_S + STOP_WAIT_S:.0f} s") from None
        if proc.returncode != 0:
            last = (err.decode(errors="replace").strip().splitlines() or ["no message"])[-1]
            raise LaunchFailed(f"ssh to {node.host} failed (exit {proc.returncode}): {last}")
        return out.decode(errors="replace").strip().splitlines()[-1] if out.strip() else ""

    async def start(self, node: Node) -> str:
        if not any(_agent_role(r) for r in node.roles):
            return f"{node.name}: no agent roles ({', '.join(node.roles)}); nothing started"
        return f"{node.name}: {await self._ssh(node, self.start_script(node))} over ssh"

    async def stop(self, node: Node) -> str:
        return f"{node.name}: {await self._ssh(node, self.stop_script(node))} over ssh"

    async def running(self, node: Node) -> bool:
        return (await self._ssh(node, self.running_script(node))).startswith("running")

    async def restart(self, name: str, launch: Launch | None = None) -> str:
        """Stop (if running) and start the agent of node ``name`` (``heal.restart_unreachable``'s
        ``restart``); what it did, as text."""
        node = self.node(name)
        if node is None:
            return f"{name}: not an ssh node of the cluster config"
        try:
            stopped = await self._ssh(node, self.stop_script(node))
            started = await self._ssh(node, self.start_script(node))
        except LaunchFailed as exc:
            return f"{name}: restart failed: {exc}"
        return f"{name}: restarted over ssh ({stopped}; {started})"


async def _each(cfg: ClusterConfig, action) -> list[str]:
    launcher = SshLauncher(cfg)
    lines = []
    for node in launcher.nodes():
        try:
            lines.append(await action(launcher, node))
        except LaunchFailed as exc:
            lines.append(f"{node.name}: {exc}")
    return lines


async def start_agents(cfg: ClusterConfig) -> list[str]:
    """``cluster up``: start every ssh node's agent that is not running; a line each."""
    return await _each(cfg, SshLauncher.start)


async def stop_agents(cfg: ClusterConfig) -> list[str]:
    """``cluster down``: stop every ssh node's agent; a line each."""
    return await _each(cfg, SshLauncher.stop)


async def restart_stopped(cfg: ClusterConfig) -> list[str]:
    """``cluster heal``: start the ssh nodes' agents whose process is gone; a line for each."""
    async def check(launcher: SshLauncher, node: Node) -> str:
        if not any(_agent_role(r) for r in node.roles) or await launcher.running(node):
            return ""
        return (f"{node.name}: agent not running; "
                f"{(await launcher._ssh(node, launcher.start_script(node)))} over ssh")

    return [line for line in await _each(cfg, check) if line]
