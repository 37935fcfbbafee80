// Aedes for mqtthub's broker matrix: `node server.js PORT [USER PASSWORD]` (127.0.0.1 only).
// With a user, only that user/password may connect. Prints "listening" once ready.
"use strict";
const net = require("net");
const { Aedes } = require("aedes");

async function main() {
  const [port, user, password] = process.argv.slice(2);
  const broker = await Aedes.createBroker();
  if (user) {
    broker.authenticate = (client, username, given, done) => {
      const ok = username === user && given !== undefined && given.toString() === password;
      if (ok) return done(null, true);
      const error = new Error("not authorized");
      error.returnCode = 4; // bad user name or password
      return done(error, false);
    };
  }
  const server = net.createServer(broker.handle);
  server.listen(Number(port), "127.0.0.1", () => console.log("listening"));
  const stop = () => server.close(() => broker.close(() => process.exit(0)));
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

main().catch((error) => { console.error(error); process.exit(1); });
