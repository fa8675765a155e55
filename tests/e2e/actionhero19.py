"""ActionHero 19.2.2's own ``ActionheroWebsocketClient.js``, built at test time (never committed).

ActionHero does not ship that file: its websocket server writes it at start-up
(``servers/websocket.js``, ``renderClientJS``) as the Primus client library
(``primus.library()`` of its Primus server: ``websockets`` transformer,
``JSON`` parser, ``/primus``) followed by ``client/ActionheroWebsocketClient.js``
with its ``%%URL%%``/``%%DEFAULTS%%`` filled from the default config.  This
module does the same with the real packages from the npm registry: it packs
``actionhero@19.2.2``, installs the ``primus`` and ``ws`` versions its
package.json asks for, and runs ActionHero's steps in node.  Everything lives in
``~/.cache/ahtwist-test/`` (``AHTWIST_TEST_CACHE``), outside the repository.
"""

import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

from tests.helpers import require

VERSION = "19.2.2"
CACHE = Path(os.environ.get("AHTWIST_TEST_CACHE", Path.home() / ".cache" / "ahtwist-test")) / f"actionhero-{VERSION}"
CLIENT = CACHE / "ActionheroWebsocketClient.js"

# servers/websocket.js of actionhero 19.2.2 (compileActionheroWebsocketClientJS and
# renderClientJS) with config/servers/websocket.js's defaults: server options {}
# (Primus' defaults), clientUrl 'window.location.origin', client {apiPath: '/api',
# cookieKey: servers.web.fingerprintOptions.cookieKey = 'sessionID'}.
RENDER_JS = r"""
const fs = require('fs'), http = require('http'), path = require('path'), util = require('util');
const Primus = require('primus');
const ah = process.argv[2];
const libSource = new Primus(http.createServer(), {}).library();
let ahClientSource = fs.readFileSync(path.join(ah, 'client', 'ActionheroWebsocketClient.js')).toString();
const url = 'window.location.origin';
ahClientSource = ahClientSource.replace(/%%URL%%/g, url);
const defaults = {apiPath: '/api', cookieKey: 'sessionID'};
defaults.url = url;
let defaultsString = util.inspect(defaults);
defaultsString = defaultsString.replace('\'window.location.origin\'', 'window.location.origin');
ahClientSource = ahClientSource.replace('%%DEFAULTS%%', 'return ' + defaultsString);
ahClientSource =
  ';;;\r\n' +
  '(function(exports){ \r\n' +
  ahClientSource +
  '\r\n' +
  'exports.ActionheroWebsocketClient = ActionheroWebsocketClient; \r\n' +
  'exports.ActionheroWebsocketClient = ActionheroWebsocketClient; \r\n' +
  '})(typeof exports === \'undefined\' ? window : exports);';
process.stdout.write(libSource + '\r\n\r\n\r\n' + ahClientSource, () => process.exit(0));
"""


def _run(command: list[str], cwd: Path) -> str:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}): {result.stderr[-2000:]}")
    return result.stdout


def actionhero19_client() -> str:
    """The generated client's source (built once, then read from the cache)."""
    if CLIENT.exists():
        return CLIENT.read_text()
    npm, node = shutil.which("npm"), shutil.which("node")
    require(npm is not None and node is not None, "npm and node (apt-get install nodejs npm)")
    build = CACHE / "build"
    shutil.rmtree(build, ignore_errors=True)
    build.mkdir(parents=True)
    tgz = _run([npm, "pack", "--silent", f"actionhero@{VERSION}"], build).strip().splitlines()[-1]
    with tarfile.open(build / tgz) as archive:
        archive.extractall(build, filter="data")
    package = build / "package"
    dependencies = json.loads((package / "package.json").read_text())["dependencies"]
    _run([npm, "install", "--silent", "--no-audit", "--no-fund", "--ignore-scripts", "--prefix", str(build),
          f"primus@{dependencies['primus']}", f"ws@{dependencies['ws']}"], build)
    (build / "render.js").write_text(RENDER_JS)
    source = _run([node, str(build / "render.js"), str(package)], build)
    if "ActionheroWebsocketClient" not in source or "primus::pong::" not in source:
        raise RuntimeError("the rendered ActionHero client does not look like one")
    temporary = CLIENT.with_suffix(".tmp")
    temporary.write_text(source)
    temporary.replace(CLIENT)
    return source
