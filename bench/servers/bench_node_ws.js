// Benchmark server: Node's `ws`.
//
// Echo or broadcast on 127.0.0.1:PORT, no compression, 4 MiB message limit. Run by
// bench/wsload_run.py; `npm install --prefix bench/build ws` puts `ws` where this finds it.
"use strict";

const path = require("path");
const { WebSocketServer } = require(path.join(__dirname, "..", "build", "node_modules", "ws"));

const args = process.argv.slice(2);
const option = (name, fallback) => {
  const at = args.indexOf(name);
  return at >= 0 ? args[at + 1] : fallback;
};
const port = Number(option("--port"));
const scenario = option("--scenario", "echo");

const server = new WebSocketServer({
  host: "127.0.0.1",
  port,
  backlog: 4096,
  perMessageDeflate: false,
  maxPayload: 4 * 1024 * 1024,
});
server.on("connection", (ws) => {
  ws.on("message", (data, isBinary) => {
    if (scenario === "echo") {
      ws.send(data, { binary: isBinary });
    } else {
      for (const client of server.clients) client.send(data, { binary: isBinary });
    }
  });
});
process.on("SIGTERM", () => process.exit(0));
