// Unleash OSS with two fixed tokens, for bench/rest.py only (never a deployment):
//   node bench/unleash/start.js PORT POSTGRES_URL
const unleash = require('unleash-server');

const [port, databaseUrl] = process.argv.slice(2);
unleash.start({
  db: { ...parse(databaseUrl), ssl: false },
  server: { port: Number(port) },
  authentication: {
    initApiTokens: [
      { environment: '*', project: '*', secret: '*:*.bench-admin-token', type: 'admin', tokenName: 'bench-admin' },
      { environment: 'development', project: 'default', secret: 'default:development.bench-frontend-token',
        type: 'frontend', tokenName: 'bench-frontend' },
    ],
  },
  logLevel: 'error',
}).then(() => console.log('unleash ready'));

function parse(url) {
  const u = new URL(url);
  return { host: u.hostname, port: Number(u.port || 5432), user: decodeURIComponent(u.username),
           password: decodeURIComponent(u.password), database: u.pathname.slice(1) };
}
