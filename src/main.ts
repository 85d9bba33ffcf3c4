/** The only file with side effects: config -> connect -> prepare -> listen, and a graceful stop. */
import { isCluster, redisClient } from "./redis/connect"
import postgres from "postgres"
import { withCatalog } from "./catalog"
import { ConfigError, helpText, parseConfig, secretValues, type Config } from "./config"
import { displayUrl, redactDeep, redactor } from "./redact"
import { createApp } from "./http/app"
import { metrics } from "./metrics"
import type { Catalog } from "./sale/catalog"
import { createRedisEngine, ShardsMismatch } from "./redis/engine"
import { createLedgerWriter } from "./redis/ledger"
import { createEmbeddedEngine } from "./embedded/engine"
import { openStore } from "./embedded/sqlite"
import { claimDataDir, DataDirOwned, DataDirUnusable, prepareDataDir, unusableStore, watchClaim } from "./embedded/datadir"
import type { Engine } from "./sale/engine"
import { join } from "node:path"
import http from "node:http"
import { requestLimits } from "./http/edge"

/** Every line the process writes goes through this: no password of a configured URL, in any spelling, and no userinfo of any URL. */
const redact = redactor(secretValues(Bun.argv.slice(2), process.env))
const log = (message: string) => console.log(`${new Date().toISOString()} ${redact(message)}`)
for (const event of ["uncaughtException", "unhandledRejection"] as const) {
  process.on(event, (error) => {
    console.error(`${new Date().toISOString()} fatal: ${redact((error as Error)?.stack ?? String(error))}`)
    process.exit(1)
  })
}

function readConfig(): { config: Config; catalog: Catalog } {
  try {
    const parsed = parseConfig(Bun.argv.slice(2), process.env)
    if (parsed.help) {
      process.stdout.write(helpText())
      process.exit(0)
    }
    return withCatalog(parsed.config, parsed.given)
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error
    refuseToStart(error.message)
  }
}

/** Exit status 2, as for every setting the server cannot start with. */
function refuseToStart(message: string): never {
  console.error(redact(message))
  process.exit(2)
}

async function waitFor<T>(what: string, attempt: () => Promise<T>): Promise<T> {
  for (let delay = 200; ; delay = Math.min(delay * 2, 5000)) {
    try {
      return await attempt()
    } catch (error) {
      log(`waiting for ${what}: ${(error as Error).message}`)
      await Bun.sleep(delay)
    }
  }
}

const { config, catalog } = readConfig()
const stop = config.redisUrl && config.databaseUrl ? await startRedisEngine(config.redisUrl, config.databaseUrl) : await startEmbeddedEngine()

const stopWithinMs = 9500
let stopping = false
async function shutdown(signal: string) {
  if (stopping) return
  stopping = true
  log(`${signal}: no longer accepting; finishing requests in flight`)
  // Bounded even when PostgreSQL hangs: what is not written by then stays in the journal.
  setTimeout(() => {
    log(`stopped after ${stopWithinMs} ms with work unfinished`)
    process.exit(0)
  }, stopWithinMs).unref()
  await stop()
  log("stopped")
  process.exit(0)
}
process.on("SIGTERM", () => void shutdown("SIGTERM"))
process.on("SIGINT", () => void shutdown("SIGINT"))

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

function listen(engine: Engine, details: string) {
  const portProblems: Record<string, string> = {
    EADDRINUSE: "the port is in use by another process; stop it or choose another PORT",
    EACCES: "permission denied: ports below 1024 need root or CAP_NET_BIND_SERVICE",
  }
  const app = createApp({ engine: served(engine), config, log, catalog })
  // The runtime's own size limits answer with a bare status: its head limit is raised to ours, and its body
  // limit lifted (below), so that the app refuses what is too large with a JSON body (http/edge.ts).
  ;(http as { maxHeaderSize: number }).maxHeaderSize = requestLimits.headBytes
  try {
    // reusePort off: with it (Elysia's default on Linux) a second server on a taken port starts and the kernel
    // splits the clients between two separate stocks.
    app.listen({ port: config.port, hostname: "0.0.0.0", reusePort: false, maxRequestBodySize: Number.MAX_SAFE_INTEGER })
  } catch (error) {
    const code = (error as { code?: string }).code ?? ""
    refuseToStart(`invalid configuration:\n  PORT (--port) ${config.port}: ${portProblems[code] ?? `cannot listen (${code || (error as Error).message})`}`)
  }
  metrics.startSampling()
  const items = config.catalogFile ? `catalog ${config.catalogFile} (${catalog.size} items)` : "generated catalog"
  log(`flashsale listening on http://127.0.0.1:${app.server!.port} (engine ${engine.name}, ${details}, ${items})`)
  return app
}

async function startRedisEngine(redisUrl: string, databaseUrl: string): Promise<() => Promise<void>> {
  const cluster = await waitFor("redis", () => isCluster(redisUrl))
  const redisOptions = { enableOfflineQueue: false, maxRetriesPerRequest: 1, commandTimeout: 2000 }
  const redis = redisClient(redisUrl, cluster, { ...redisOptions, enableAutoPipelining: true })
  const ledgerRedis = redisClient(redisUrl, cluster, redisOptions)
  for (const [name, connection] of [["redis", redis], ["ledger redis", ledgerRedis]] as const) {
    connection.on("error", () => {})
    connection.on("close", () => log(`${name}: connection lost, reconnecting`))
  }
  const sql = postgres(databaseUrl, { max: 4, connect_timeout: 2, idle_timeout: 60, onnotice: () => {} })
  await waitFor("redis", () => redis.connect())
  await waitFor("redis", () => ledgerRedis.connect())

  const ledger = createLedgerWriter({ redis: ledgerRedis, sql, commitWaitMs: config.commitWaitMs, log })
  const engine = createRedisEngine({ redis, sql, ledger, config, log, mode: cluster ? "cluster" : "standalone" })
  const claim = await waitFor("redis", () => engine.claimShards().then(() => undefined, (error) => (error instanceof ShardsMismatch ? error : Promise.reject(error))))
  if (claim) refuseToStart(`invalid configuration:\n  SALE_SHARDS (--sale-shards) ${config.saleShards}: ${claim.message}`)
  await waitFor("the current sale (it may need PostgreSQL to rebuild)", () => engine.prepare())
  ledger.start()
  engine.startMaintenance()
  const app = listen(engine, `redis ${cluster ? "cluster " : ""}${displayUrl(redisUrl)}, postgres ${displayUrl(databaseUrl)}`)
  return async () => {
    app.closeWatchers()
    await app.server!.stop()
    engine.stopMaintenance()
    await ledger.stop(6000)
    await Promise.allSettled([sql.end({ timeout: 1 }), redis.quit(), ledgerRedis.quit()])
  }
}

async function startEmbeddedEngine(): Promise<() => Promise<void>> {
  const path = join(config.dataDir, "flashsale.sqlite")
  let store: ReturnType<typeof openStore>
  try {
    prepareDataDir(config.dataDir)
    claimDataDir(config.dataDir)
    try {
      store = openStore(path)
    } catch (error) {
      throw unusableStore(config.dataDir, error)
    }
  } catch (error) {
    if (error instanceof DataDirUnusable) refuseToStart(`invalid configuration:\n  DATA_DIR (--data-dir) ${JSON.stringify(error.dir)}: ${error.reason}`)
    if (error instanceof DataDirOwned) refuseToStart(`invalid configuration:\n  DATA_DIR (--data-dir) ${JSON.stringify(error.dir)}: ${error.message}`)
    throw error
  }
  watchClaim(config.dataDir, () => {
    log(`fatal: ${join(config.dataDir, "owner.lock")} was removed or replaced, so another process may claim DATA_DIR; exiting so that two processes never sell one stock`)
    process.exit(1)
  })
  const engine = createEmbeddedEngine({
    store,
    config,
    log,
    onFatal: (error) => {
      log(`fatal: ${error.message}; exiting so that a restart recovers from ${path}`)
      process.exit(1)
    },
  })
  engine.startMaintenance()
  const app = listen(engine, `data ${path}`)
  return async () => {
    app.closeWatchers()
    await app.server!.stop()
    engine.close()
  }
}
