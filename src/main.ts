/**
 * The only file with side effects: settings -> listen at once -> connect and prepare the engine -> serve, and a
 * graceful stop. With WORKERS > 1 this process supervises that many workers instead (src/supervisor.ts), each of
 * them this program again, told so by its environment (src/worker.ts).
 */
import { probeRedis, redisClient } from "./redis/connect"
import { probePostgres } from "./postgres/connect"
import postgres from "postgres"
import { withCatalog } from "./catalog"
import { ConfigError, helpText, readOptions, secretValues, workerRole, type Config } from "./config"
import { displayUrl, redactDeep, redactor } from "./redact"
import { createApp } from "./http/app"
import { metrics } from "./metrics"
import { generatedCatalog, type Catalog } from "./sale/catalog"
import { createRedisEngine, ShardsMismatch } from "./redis/engine"
import { createLedgerWriter } from "./redis/ledger"
import { createEmbeddedEngine } from "./embedded/engine"
import { openStore, type Store } from "./embedded/sqlite"
import { claimDataDir, DataDirOwned, DataDirUnusable, prepareDataDir, unusableStore, watchClaim } from "./embedded/datadir"
import { startingEngine, swappable, type Engine, type Verdict } from "./sale/engine"
import { version } from "./version"
import { join } from "node:path"
import { readFileSync } from "node:fs"
import http from "node:http"
import { requestLimits } from "./http/edge"
import { supervise } from "./supervisor"
import { joinSupervisor, type SupervisorLink } from "./worker"

/**
 * Every line the process writes goes through this: no password of a configured URL and no operator token, in
 * any spelling, and no userinfo of any URL. ADMIN_TOKEN_FILE's token joins it once read.
 */
const secrets = secretValues(Bun.argv.slice(2), process.env)
let redact = redactor(secrets)
/** Set when a supervisor started this process: its lines then say which worker wrote them, since all share one log. */
const worker = workerRole(process.env)
const label = worker ? `worker ${worker.index}: ` : ""
const log = (message: string) => console.log(`${new Date().toISOString()} ${label}${redact(message)}`)
for (const event of ["uncaughtException", "unhandledRejection"] as const) {
  process.on(event, (error) => {
    console.error(`${new Date().toISOString()} ${label}fatal: ${redact((error as Error)?.stack ?? String(error))}`)
    process.exit(1)
  })
}

/** Exit status 2, as for every setting the server cannot start with: one message naming every one. */
function refuseToStart(problems: string[]): never {
  console.error(label + redact(new ConfigError(problems).message))
  process.exit(2)
}

const portProblems: Record<string, string> = {
  EADDRINUSE: "the port is in use by another process; stop it or choose another PORT",
  EACCES: "permission denied: ports below 1024 need root or CAP_NET_BIND_SERVICE",
  EADDRNOTAVAIL: "the address is not one of this machine's; choose another HOST",
}
const portProblem = (config: Config, error: unknown) => {
  const code = (error as { code?: string }).code ?? ""
  const where = code === "EADDRNOTAVAIL" ? `HOST (--host) ${config.host}` : `PORT (--port) ${config.port}`
  return `${where}: ${portProblems[code] ?? `cannot listen (${code || (error as Error).message})`}`
}

/**
 * Listens on HOST:PORT once and closes it: the port (PORT=0 picks one), or the problem. Without SO_REUSEPORT, so
 * that a port taken by anyone is found, one that listens with SO_REUSEPORT too.
 */
function bindOnce(config: Config): number | string {
  try {
    const server = Bun.serve({ hostname: config.host, port: config.port, reusePort: false, fetch: () => new Response() })
    const port = server.port!
    server.stop(true)
    return port
  } catch (error) {
    return portProblem(config, error)
  }
}

/** The embedded engine's DATA_DIR, made usable, claimed by this process and its SQLite store open; throws a problem line. */
function openDataDir(dir: string): Store {
  try {
    prepareDataDir(dir)
    claimDataDir(dir)
    try {
      return openStore(join(dir, "flashsale.sqlite"))
    } catch (error) {
      throw unusableStore(dir, error)
    }
  } catch (error) {
    if (error instanceof DataDirUnusable) throw new ConfigError([`DATA_DIR (--data-dir) ${JSON.stringify(error.dir)}: ${error.reason}`])
    if (error instanceof DataDirOwned) throw new ConfigError([`DATA_DIR (--data-dir) ${JSON.stringify(error.dir)}: ${error.message}`])
    throw error
  }
}

/** The operator's token from ADMIN_TOKEN_FILE (its first line); throws a problem line. */
function tokenFromFile(path: string): string {
  const where = `ADMIN_TOKEN_FILE (--admin-token-file) ${path}`
  let text: string
  try {
    text = readFileSync(path, "utf8")
  } catch (error) {
    throw new ConfigError([`${where}: cannot read it (${(error as { code?: string }).code ?? (error as Error).message})`])
  }
  const token = text.split(/\r?\n/)[0]!.trim()
  redact = redactor([...secrets, token])
  if (token.length < 32 || /\s/.test(token)) throw new ConfigError([`${where}: expected a token of at least 32 characters without spaces on its first line (openssl rand -hex 32 makes one)`])
  return token
}

/** Every setting, checked together: the options, the catalog and the data directory; one message names every problem. */
function readSettings(): { config: Config; catalog: Catalog; store?: Store; adminToken?: string } {
  const reading = readOptions(Bun.argv.slice(2), process.env)
  if (reading.help) {
    process.stdout.write(helpText())
    process.exit(0)
  }
  if (reading.version) {
    console.log(`flashsale ${version}`)
    process.exit(0)
  }
  const problems = [...reading.problems]
  let config = reading.config
  let catalog: Catalog = generatedCatalog
  let store: Store | undefined
  const collect = (check: () => void) => {
    try {
      check()
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error
      problems.push(...error.problems)
    }
  }
  if (!reading.bad.has("catalogFile")) collect(() => ({ config, catalog } = withCatalog(config, reading.given)))
  let adminToken = config.adminToken
  if (config.adminTokenFile && !reading.bad.has("adminToken")) collect(() => (adminToken = tokenFromFile(config.adminTokenFile!)))
  const embedded = !config.redisUrl && !config.databaseUrl && !reading.bad.has("redisUrl") && !reading.bad.has("databaseUrl")
  if (embedded && !reading.bad.has("dataDir")) collect(() => (store = openDataDir(config.dataDir)))
  if (problems.length > 0) {
    // A worker's siblings hold the port: its supervisor checked it.
    const port = worker || reading.bad.has("port") || reading.bad.has("host") ? undefined : bindOnce(config)
    refuseToStart(typeof port === "string" ? [...problems, port] : problems)
  }
  return { config: worker ? { ...config, port: worker.port } : config, catalog, store, adminToken }
}

const { config, catalog, store, adminToken } = readSettings()
const engineName = store ? "embedded" : "redis"
const holder = swappable(startingEngine(engineName, { waiting_for: "the engine to be prepared" }))
let stopping = false
/** Stops the engine once it is running; until then there is nothing of it to stop. */
let stopEngine: () => Promise<void> = async () => {}
const stopWithinMs = 9500

if (config.workers > 1 && !worker) startSupervisor()
else serve()

/** WORKERS > 1: the port checked (or picked, for PORT=0) here, once, then the workers started on it. */
function startSupervisor() {
  const port = bindOnce(config)
  if (typeof port === "string") refuseToStart([port])
  supervise({ ...config, port }, log)
}

/** Serves in this process: alone, or as a worker, which also stops once its supervisor is gone. */
function serve() {
  const link = worker && joinSupervisor(worker, config.workers, () => void shutdown(`supervisor (pid ${worker.supervisorPid}) gone`))
  const app = listen(holder.engine, link)
  if (store) stopEngine = startEmbeddedEngine(store)
  else void startRedisEngine(config.redisUrl!, config.databaseUrl!).then((stop) => (stopEngine = stop))

  async function shutdown(reason: string) {
    if (stopping) return
    stopping = true
    log(`${reason}: no longer accepting; finishing requests in flight`)
    // Bounded even when PostgreSQL hangs: what is not written by then stays in the journal.
    setTimeout(() => {
      log(`stopped after ${stopWithinMs} ms with work unfinished`)
      process.exit(0)
    }, stopWithinMs).unref()
    app.closeWatchers()
    await app.server!.stop()
    await stopEngine()
    log("stopped")
    process.exit(0)
  }
  process.on("SIGTERM", () => void shutdown("SIGTERM"))
  process.on("SIGINT", () => void shutdown("SIGINT"))
}

/**
 * The engine as the HTTP layer sees it: what it serves of health and errors (in /health, /events) goes
 * through the same redaction as the log, since a library's error text may quote a part of a URL.
 */
function served(engine: Engine): Engine {
  const scrubbed = (error: unknown) => {
    if (error instanceof Error) error.message = redact(error.message)
    return error
  }
  return Object.assign(Object.create(engine) as Engine, {
    health: async () => redactDeep(await engine.health(), redact),
    status: () => engine.status().catch((error: unknown) => Promise.reject(scrubbed(error))),
  })
}

/** Listens at once, whatever the engine is waiting for: /health says what that is. A worker then tells its supervisor. */
function listen(engine: Engine, link: SupervisorLink | undefined) {
  const app = createApp({ engine: served(engine), config: { ...config, adminToken }, log, gatherMetrics: link?.gather })
  // The runtime's own size limits answer with a bare status: its head limit is raised to ours, and its body
  // limit lifted (below), so that the app refuses what is too large with a JSON body (http/edge.ts).
  ;(http as { maxHeaderSize: number }).maxHeaderSize = requestLimits.headBytes
  try {
    // reusePort off: with it (Elysia's default on Linux) a second server on a taken port starts and the kernel
    // splits the clients between two separate stocks. Workers share the port on purpose, and one stock: their
    // supervisor checked the port without it.
    app.listen({ port: config.port, hostname: config.host, reusePort: Boolean(worker), maxRequestBodySize: Number.MAX_SAFE_INTEGER })
  } catch (error) {
    refuseToStart([portProblem(config, error)])
  }
  metrics.startSampling()
  const host = app.server!.hostname ?? config.host
  const shown = host.includes(":") ? `[${host}]` : host
  const items = config.catalogFile ? `catalog ${config.catalogFile} (${catalog.size} items)` : "generated catalog"
  log(`flashsale ${version} listening on http://${shown}:${app.server!.port} (engine ${engineName}, ${items})`)
  link?.listening(app.workerSeries)
  return app
}

function startEmbeddedEngine(store: Store): () => Promise<void> {
  const path = join(config.dataDir, "flashsale.sqlite")
  watchClaim(config.dataDir, () => {
    log(`fatal: ${join(config.dataDir, "owner.lock")} was removed or replaced, so another process may claim DATA_DIR; exiting so that two processes never sell one stock`)
    process.exit(1)
  })
  const engine = createEmbeddedEngine({
    store,
    config,
    catalog,
    log,
    onFatal: (error) => {
      log(`fatal: ${error.message}; exiting so that a restart recovers from ${path}`)
      process.exit(1)
    },
  })
  engine.startMaintenance()
  holder.swap(engine)
  log(`engine embedded ready: data ${path}`)
  return async () => engine.close()
}

/** Retries `attempt` while its failure is one waiting can fix, saying in /health what it waits for; a wrong setting is exit 2. */
async function waitFor<T>(what: string, address: string, attempt: () => Promise<T>, variable?: string): Promise<T> {
  let said = ""
  for (let delay = 200; ; delay = Math.min(delay * 2, 5000)) {
    try {
      return await attempt()
    } catch (error) {
      const verdict: Verdict = (error as { verdict?: Verdict }).verdict ?? { kind: "wait", reason: (error as Error).message }
      if (verdict.kind === "wrong" && variable) refuseToStart([`${variable}: ${verdict.reason}`])
      holder.waitingFor({ waiting_for: what, address, error: verdict.reason })
      if (verdict.reason !== said) log(`waiting for ${what} at ${address}: ${verdict.reason}`)
      said = verdict.reason
      await Bun.sleep(delay)
    }
  }
}

async function startRedisEngine(redisUrl: string, databaseUrl: string): Promise<() => Promise<void>> {
  const [redisShown, postgresShown] = [displayUrl(redisUrl), displayUrl(databaseUrl)]
  // Both at once, so that one message names both when both are wrong.
  const [redisFirst, postgresFirst] = await Promise.allSettled([probeRedis(redisUrl), probePostgres(databaseUrl)])
  const wrong = [
    ...(redisFirst.status === "rejected" && redisFirst.reason.verdict?.kind === "wrong" ? [`REDIS_URL (--redis-url) ${redisShown}: ${redisFirst.reason.verdict.reason}`] : []),
    ...(postgresFirst.status === "rejected" && postgresFirst.reason.verdict?.kind === "wrong" ? [`DATABASE_URL (--database-url) ${postgresShown}: ${postgresFirst.reason.verdict.reason}`] : []),
  ]
  if (wrong.length > 0) refuseToStart(wrong)
  if (postgresFirst.status === "rejected") {
    // Unreachable is not wrong: the engine sells from its journal meanwhile (health degraded); a wrong answer once it is reachable stops the start.
    log(`PostgreSQL (${postgresShown}) is unreachable: ${postgresFirst.reason.message}; selling from the Redis journal until it answers`)
    void waitFor("PostgreSQL", postgresShown, () => probePostgres(databaseUrl), `DATABASE_URL (--database-url) ${postgresShown}`).then(() => log(`PostgreSQL (${postgresShown}) answers`))
  }
  const { cluster } = redisFirst.status === "fulfilled" ? redisFirst.value : await waitFor("Redis", redisShown, () => probeRedis(redisUrl), `REDIS_URL (--redis-url) ${redisShown}`)
  const redisOptions = { enableOfflineQueue: false, maxRetriesPerRequest: 1, commandTimeout: 2000 }
  const redis = redisClient(redisUrl, cluster, { ...redisOptions, enableAutoPipelining: true })
  const ledgerRedis = redisClient(redisUrl, cluster, redisOptions)
  for (const [name, connection] of [["redis", redis], ["ledger redis", ledgerRedis]] as const) {
    connection.on("error", () => {})
    // A clean stop closes the connections on purpose: that is not worth a line.
    connection.on("close", () => stopping || log(`${name}: connection lost, reconnecting`))
  }
  const sql = postgres(databaseUrl, { max: 4, connect_timeout: 2, idle_timeout: 60, onnotice: () => {} })
  await waitFor("Redis", redisShown, () => redis.connect())
  await waitFor("Redis", redisShown, () => ledgerRedis.connect())

  const ledger = createLedgerWriter({ redis: ledgerRedis, sql, commitWaitMs: config.commitWaitMs, log })
  const engine = createRedisEngine({ redis, sql, ledger, config, catalog, log, mode: cluster ? "cluster" : "standalone" })
  const claim = await waitFor("Redis", redisShown, () => engine.claimShards().then(() => undefined, (error) => (error instanceof ShardsMismatch ? error : Promise.reject(error))))
  if (claim) refuseToStart([`SALE_SHARDS (--sale-shards) ${config.saleShards}: ${claim.message}`])
  await waitFor(config.saleSchedule === "planned" ? "PostgreSQL, to read the planned sales and prepare the current one" : "the current sale to be ready (a rebuild needs PostgreSQL)", postgresShown, () => engine.prepare())
  ledger.start()
  engine.startMaintenance()
  holder.swap(engine)
  log(`engine redis ready: redis ${cluster ? "cluster " : ""}${redisShown}, postgres ${postgresShown}`)
  return async () => {
    engine.stopMaintenance()
    await ledger.stop(6000)
    await Promise.allSettled([sql.end({ timeout: 1 }), redis.quit(), ledgerRedis.quit()])
  }
}
