"""`bakeoff ui`: the web app over a bakeoff database (aiohttp, server-side rendered pages).

Bound to 127.0.0.1 unless told otherwise. Requests whose Host header is not the address the server
listens on are refused (DNS rebinding); the one write — an arena vote — needs the page's token.
Static files come from a fixed table (no path from the request reaches the file system)."""

from __future__ import annotations

import contextlib
import logging
import secrets
from importlib import resources
from typing import Any

from aiohttp import web

from bakeoff.store import Store
from bakeoff.ui._views import NotFound, Views

log = logging.getLogger(__name__)

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:;"
    " font-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none';"
    " base-uri 'none'"
)


def static_file(name: str) -> tuple[bytes, str]:
    if name in ("app.js", "app.css"):
        data = resources.files("bakeoff.ui").joinpath("static", name).read_bytes()
        return data, "text/javascript" if name.endswith(".js") else "text/css"
    raise KeyError(name)


STORE = web.AppKey("store", Store)


def make_app(db_path: str, *, allowed_hosts: set[str] | None = None) -> web.Application:
    """The aiohttp application. `allowed_hosts`: Host header values accepted (None: any)."""
    app = web.Application(client_max_size=64 * 1024)
    h = _Handlers(app, allowed_hosts)

    async def on_startup(app: web.Application) -> None:
        app[STORE] = Store(db_path)
        # the statistics' scipy.stats, imported when first used elsewhere (0.5 s every CLI command
        # would pay), is imported before the port opens: else the first overview took 0.8 s more
        import scipy.stats  # noqa: F401

    async def on_cleanup(app: web.Application) -> None:
        app[STORE].close()

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    app.middlewares.append(h.guard)
    app.router.add_get("/favicon.ico", h.favicon)
    app.router.add_get("/static/{name}", h.static)
    app.router.add_post("/run/{run_id}/arena", h.vote)
    app.router.add_get("/{tail:.*}", h.any_page)
    return app


class _Handlers:
    """The app's middleware and routes; `token` guards the one form that writes (the vote)."""

    def __init__(self, app: web.Application, allowed_hosts: set[str] | None) -> None:
        self.app = app
        self.allowed_hosts = allowed_hosts
        self.token = secrets.token_urlsafe(16)

    @web.middleware
    async def guard(self, request: web.Request, handler: Any) -> web.StreamResponse:
        hosts = self.allowed_hosts
        if hosts is not None and request.host not in hosts:
            return web.Response(
                status=421,
                text=f"unexpected Host header {request.host[:100]!r}: to accept it, start the UI "
                f"with --allow-host {request.host[:100].rsplit(':', 1)[0]}\n",
                headers={"X-Content-Type-Options": "nosniff"},
            )
        resp: web.StreamResponse = await handler(request)
        resp.headers["Content-Security-Policy"] = CSP
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["Referrer-Policy"] = "no-referrer"
        return resp

    def page_response(self, views: Views, address: str) -> web.Response:
        from bakeoff.ui._render import url

        try:
            page = views.page(address)
        except NotFound as e:
            body = views.env.get_template("layout.html").render(
                title="Not found",
                body=_markup(views.env.get_template("notfound.html").render(m=str(e))),
                run_id=None,
            )
            return web.Response(status=404, text=body, content_type="text/html")
        html = views.env.get_template("layout.html").render(
            title=page.title,
            body=_markup(page.html),
            run_id=page.run_id,
            url=url,
        )
        return web.Response(text=html, content_type="text/html")

    async def static(self, request: web.Request) -> web.Response:
        try:
            data, ctype = static_file(request.match_info["name"])
        except KeyError:
            raise web.HTTPNotFound() from None
        return web.Response(
            body=data, content_type=ctype, headers={"Cache-Control": "max-age=3600"}
        )

    async def vote(self, request: web.Request) -> web.Response:
        from bakeoff.arena import record_human_vote

        run_id = request.match_info["run_id"]
        form = await request.post()
        if not secrets.compare_digest(str(form.get("token", "")), self.token):
            return web.Response(status=403, text="missing or stale page token: reload the page\n")
        try:
            record_human_vote(
                self.app[STORE],
                run_id,
                str(form.get("left", "")),
                str(form.get("right", "")),
                str(form.get("winner", "")),
            )
        except ValueError as e:
            return web.Response(status=400, text=f"{e}\n")
        raise web.HTTPSeeOther(f"/run/{run_id}/arena")

    async def any_page(self, request: web.Request) -> web.Response:
        address = request.path + ("?" + request.query_string if request.query_string else "")
        # rendered on the loop: one local user, and the SQLite connection belongs to this thread
        views = Views(self.app[STORE], context={"token": self.token})
        return self.page_response(views, address)

    async def favicon(self, request: web.Request) -> web.Response:
        return web.Response(status=204)


def _markup(html: str) -> Any:
    from markupsafe import Markup

    return Markup(html)  # a page fragment rendered (and escaped) by our templates


def allowed_hosts(host: str, port: int, extra: list[str] | None = None) -> set[str]:
    """The Host header values a server listening on `host:port` accepts: the address itself, the
    loopback names when it listens there, and when it listens on every interface (`0.0.0.0`,
    `::`) this machine's name and addresses — never any Host, which DNS rebinding would use —
    plus the names given (`--allow-host`, e.g. the DNS name users reach it by)."""
    names = {host, *(extra or [])}
    if host in ("127.0.0.1", "localhost", "::1", "0.0.0.0", "::"):
        names |= {"127.0.0.1", "localhost", "::1"}
    if host in ("0.0.0.0", "::"):
        names |= _own_names()
    names -= {"0.0.0.0", "::"}
    return {f"[{n}]:{port}" if ":" in n else f"{n}:{port}" for n in names}


def _own_names() -> set[str]:
    import socket

    names = {socket.gethostname(), socket.getfqdn()}
    for name in list(names):
        with contextlib.suppress(OSError):
            names |= {str(a[4][0]) for a in socket.getaddrinfo(name, None)}
    # the address of the interface that routes out (a UDP connect sends nothing)
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("10.255.255.255", 1))
        names.add(s.getsockname()[0])
    return {n for n in names if n}


def serve(
    db_path: str,
    host: str = "127.0.0.1",
    port: int = 8765,
    *,
    open_browser: bool = False,
    allow_hosts: list[str] | None = None,
) -> None:
    """Run the web app until interrupted."""
    app = make_app(db_path, allowed_hosts=allowed_hosts(host, port, allow_hosts))
    if open_browser:
        import webbrowser

        webbrowser.open(f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}/")
    web.run_app(app, host=host, port=port, print=None, access_log=None)
