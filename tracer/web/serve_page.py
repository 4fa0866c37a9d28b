"""The page a browser loads from ``tracer serve``: textual-serve's page, with nothing fetched
from other hosts.

textual-serve 1.1.3's own page links a web font from fonts.googleapis.com, which fails offline
(and tells a third party who opens the inspector). This one declares the Roboto Mono that
textual-serve ships in its static folder instead, and builds the websocket's address from the
page's own location, with the token as the last part of its path (textual.js appends
``?width=..&height=..`` to it, so a query string there would break).
"""

from __future__ import annotations

import json
from string import Template

#: Where textual-serve's static files (textual.js, xterm.css, fonts) are served.
STATIC = "/static/"
FONT = STATIC + "fonts/RobotoMono-VariableFont_wght.ttf"

#: The page's response headers: never cached (its address holds the token), never framed,
#: never a Referer, and nothing loaded or contacted beyond this server.
HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self' 'unsafe-inline'; "
        "style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'; form-action 'none'; base-uri 'none'"
    ),
}

_PAGE = Template(
    """<!DOCTYPE html>
<html>
  <head>
    <meta charset="utf-8" />
    <title>$title</title>
    <link rel="icon" href="data:," />
    <link rel="preload" href="$font" as="font" type="font/ttf" crossorigin />
    <link rel="stylesheet" href="${static}css/xterm.css" />
    <script src="${static}js/textual.js"></script>
    <style>
      @font-face {
        font-family: "Roboto Mono";
        src: url("$font") format("truetype");
        font-weight: 100 700;
      }
      body { background: #0c181f; margin: 0; }
      .dialog-container {
        position: absolute; width: 100vw; height: 100vh; display: flex;
        align-items: center; justify-content: center; z-index: 10;
      }
      .shade { position: absolute; width: 100%; height: 100%; background: #0c181f; }
      .intro {
        width: 640px; height: 240px; font-size: 16px; z-index: 20;
        font-family: "Roboto Mono", menlo, monospace; text-align: center;
        color: rgba(255, 255, 255, 0.95); background-color: #12232d;
        display: flex; align-items: center; justify-content: center; margin: 32px;
      }
      body.-first-byte .intro-dialog { display: none; }
      body .textual-terminal { opacity: 0; transition: opacity 0.3s ease-out; }
      body.-first-byte .textual-terminal { opacity: 1; }
      body button {
        padding: 16px 32px; background-color: #5e0ba7; color: rgba(255, 255, 255, 0.95);
        border: none; font-family: "Roboto Mono", menlo, monospace; margin: 16px;
        display: block; cursor: pointer;
      }
      #start { display: none; }
      #start.-delay { display: block; }
      .closed-dialog { display: none; }
      body.-closed .closed-dialog { display: flex; }
    </style>
  </head>
  <body>
    <div class="dialog-container intro-dialog">
      <div class="shade"></div>
      <div class="intro">
        <div>$title: starting the inspector…</div>
        <button type="button" onclick="startNow()" id="start">Start</button>
      </div>
    </div>
    <div class="dialog-container closed-dialog">
      <div class="shade"></div>
      <div class="intro">
        <div class="message">Session ended.</div>
        <button type="button" onclick="window.location.reload()">Restart</button>
      </div>
    </div>
    <div id="terminal" class="textual-terminal" data-font-size="$font_size"></div>
    <script>
      function startNow() {  // textual.js waits for this button when the address has ?delay
        const params = new URLSearchParams(location.search);
        params.delete("delay");
        location.search = params.toString();
      }
      document.getElementById("terminal").dataset.sessionWebsocketUrl =
        (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws/" + $token;
    </script>
  </body>
</html>
"""
)


def render(token: str, *, title: str = "layer-tracer", font_size: int = 16) -> str:
    """The page for one server start (``token`` ends up in the websocket's address)."""
    return _PAGE.substitute(
        title=title,
        static=STATIC,
        font=FONT,
        font_size=int(font_size),
        token=json.dumps(token),
    )
