/** The real engine, ledger writer and app on isolated services, with a clock the test moves. */
import Redis from "ioredis"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { createApp, type AppDeps } from "../../src/http/app"
import type { Limits } from "../../src/http/ratelimit"
import type { EngineMetrics } from "../../src/metrics"
import { clusterClient, type RedisClient } from "../../src/redis/connect"
import { createRedisEngine } from "../../src/redis/engine"
import { createLedgerWriter } from "../../src/redis/ledger"
import { createEmbeddedEngine } from "../../src/embedded/engine"
import { openStore } from "../../src/embedded/sqlite"
import type { Config } from "../../src/config"
import type { Engine } from "../../src/sale/engine"
import { generatedCatalog, type Catalog } from "../../src/sale/catalog"
import { isolated, until } from "./services"

export type EngineKind = "redis" | "embedded"
/** Every engine: the suites that take this list hold each one to the same contract. */
export const engines: EngineKind[] = ["redis", "embedded"]

/** saleShards splits the Redis engine's sales (src/redis/shards.ts); the embedded engine has no such thing. */
export type SaleConfig = Pick<Config, "saleItems" | "userLimit" | "salePeriodSeconds" | "holdSeconds"> & { saleShards?: number; saleSchedule?: "recurring" | "planned" }

export const defaults: SaleConfig = { saleItems: 100, userLimit: 3, salePeriodSeconds: 3600, holdSeconds: 60 }

/** The engine's durable rows: PostgreSQL for redis, SQLite for embedded; portable SQL only. */
type Kept = {
  query(text: string): Promise<Record<string, any>[]>
  drained(): Promise<unknown>
  forget(saleIds: number[]): Promise<void>
  /** What the maintenance timer does just before a sale starts: initialise it, empty (Redis engine). */
  prepareNext(): Promise<void>
  close(): Promise<void>
}

/** A Redis Cluster to run the Redis engine on instead of the suite's one Redis (support/services.ts startRedisCluster). */
export type OnCluster = { nodes: { url: string }[]; flush(): Promise<void> }

async function redisEngine(config: SaleConfig, now: () => number, catalog: Catalog, cluster?: OnCluster): Promise<{ engine: Engine; kept: Kept }> {
  const env = await isolated()
  let redis: RedisClient = env.redis
  let ledgerRedis: RedisClient = new Redis(env.redisUrl)
  if (cluster) {
    // Each harness gets an empty cluster: no keys of an earlier test's sales.
    await cluster.flush()
    ledgerRedis.disconnect()
    const options = { enableOfflineQueue: true, maxRetriesPerRequest: 1, commandTimeout: 5000 }
    redis = clusterClient(cluster.nodes[0]!.url, { ...options, enableAutoPipelining: true })
    ledgerRedis = clusterClient(cluster.nodes[0]!.url, options)
    await Promise.all([redis.connect(), ledgerRedis.connect()])
  }
  const ledger = createLedgerWriter({ redis: ledgerRedis, sql: env.sql, claimAfterMs: 500, log: () => {} })
  const engine = createRedisEngine({ redis, sql: env.sql, ledger, config, catalog, now, log: () => {}, mode: cluster ? "cluster" : "standalone" })
  await engine.claimShards()
  await engine.prepare()
  ledger.start()
  return {
    engine,
    kept: {
      query: (text) => env.sql.unsafe(text) as Promise<Record<string, any>[]>,
      drained: async () => {
        await ledger.flush()
        return until("the ledger to drain", async () => (await ledger.backlog()).entries === 0)
      },
      prepareNext: () => engine.prepareNext(),
      forget: async (saleIds) => {
        for (const saleId of saleIds) await engine.forget(saleId)
      },
      async close() {
        await ledger.stop()
        ledgerRedis.disconnect()
        if (cluster) redis.disconnect()
        await env.close()
      },
    },
  }
}

function embeddedEngine(config: SaleConfig, now: () => number, catalog: Catalog, metrics?: EngineMetrics): { engine: Engine; kept: Kept } {
  const dir = mkdtempSync(join(tmpdir(), "fs-embedded-"))
  const store = openStore(join(dir, "flashsale.sqlite"))
  const engine = createEmbeddedEngine({ store, config: { saleSchedule: "recurring", ...config }, catalog, now, log: () => {}, metrics })
  return {
    engine,
    kept: {
      query: async (text) => store.db.query(text).all() as Record<string, any>[],
      // Every answer waits for its commit, so there is never anything left to write.
      drained: async () => true,
      prepareNext: async () => engine.prepareNext(),
      forget: async () => {},
      async close() {
        engine.close()
        rmSync(dir, { recursive: true, force: true })
      },
    },
  }
}

/** What the app and engine are given besides the sale: metrics, the recurring catalog, rate limits (off unless given), CORS, the operator's token. */
export type AppOptions = Partial<Pick<AppDeps, "metrics">> & { catalog?: Catalog; limits?: Partial<Limits>; cluster?: OnCluster; corsOrigins?: string[]; adminToken?: string }

export async function harness(config: Partial<SaleConfig> = {}, kind: EngineKind = "redis", options: AppOptions = {}) {
  const full = { ...defaults, ...config }
  const period = full.salePeriodSeconds * 1000
  // A sale in the future far enough that real time never reaches it, 1 s after it starts.
  const clock = { now: 1_900_000_000_000 - (1_900_000_000_000 % period) + 1000 }
  const catalog = options.catalog ?? generatedCatalog
  const { engine, kept } = kind === "redis" ? await redisEngine(full, () => clock.now, catalog, options.cluster) : embeddedEngine(full, () => clock.now, catalog, options.metrics)
  const app = createApp({ engine, config: { ...full, ...options.limits, corsOrigins: options.corsOrigins, adminToken: options.adminToken }, log: () => {}, metrics: options.metrics })

  const call = async (method: string, path: string, init: { body?: string | FormData; headers?: Record<string, string> } = {}) => {
    const response = await app.handle(new Request(`http://localhost${path}`, { method, ...init }))
    const text = await response.text()
    return { status: response.status, headers: response.headers, body: text.startsWith("{") ? JSON.parse(text) : text }
  }

  return {
    kind,
    config: full,
    clock,
    engine,
    app,
    call,
    checkout: (user: string, id: string | number) => call("POST", `/checkout?user_id=${encodeURIComponent(user)}&id=${id}`),
    purchase: (code: string) => call("POST", `/purchase?code=${encodeURIComponent(code)}`),
    /** Rows of the engine's durable store (portable SQL). */
    query: kept.query,
    /** The `n` column of a one-row query, as a number. */
    count: async (text: string) => Number((await kept.query(text))[0]!.n),
    /** Waits until every decision so far is in the durable store. */
    drained: kept.drained,
    /**
     * Moves the clock to `at`, as time would pass with the maintenance timer running: the two sales before
     * `at`'s are prepared before they start (more would never be touched), so no sale is found missing and rebuilt.
     */
    async moveTo(at: number) {
      if (full.saleSchedule === "planned") {
        // Planned sales: each one the clock reaches is prepared just before it starts, and the next once there.
        const starts = (await kept.query("select starts_at from sales where kind = 'planned' and deleted_at is null"))
          .map((r) => (r.starts_at instanceof Date ? r.starts_at.getTime() : Date.parse(String(r.starts_at))))
          .filter((t) => t > clock.now && t <= at)
          .sort((a, b) => a - b)
        for (const t of starts) {
          clock.now = t - 1
          await kept.prepareNext()
        }
        clock.now = at
        await kept.prepareNext()
        return
      }
      const target = Math.floor(at / period)
      for (let sale = Math.max(Math.floor(clock.now / period) + 1, target - 1); sale <= target; sale++) {
        clock.now = sale * period - 1
        await kept.prepareNext()
      }
      clock.now = at
    },
    /** A call to the operator API with the token (the harness's `adminToken`), or with `token` when given. */
    admin: (method: string, path: string, body?: unknown, token = options.adminToken) =>
      call(method, path, { body: body === undefined ? undefined : JSON.stringify(body), headers: { ...(body === undefined ? {} : { "content-type": "application/json" }), ...(token ? { authorization: `Bearer ${token}` } : {}) } }),
    /** Drops finished sales from Redis, as the retention prune does, so that long test runs stay fast. */
    forget: kept.forget,
    close: kept.close,
  }
}

export type Harness = Awaited<ReturnType<typeof harness>>

/** Serves the harness's app on a free port, for tests that go through real HTTP. */
export function serve(h: Harness) {
  const app = h.app.listen({ port: 0, hostname: "127.0.0.1" })
  const base = `http://127.0.0.1:${app.server!.port}`
  const post = async (path: string) => {
    const response = await fetch(`${base}${path}`, { method: "POST" })
    return { status: response.status, body: (await response.json()) as any }
  }
  return {
    base,
    checkout: (user: string, id: number) => post(`/checkout?user_id=${user}&id=${id}`),
    purchase: (code: string) => post(`/purchase?code=${code}`),
    stop: () => {
      h.app.closeWatchers()
      return app.stop()
    },
  }
}

/** Runs every task with at most `width` in flight. */
export async function inFlight<T>(width: number, tasks: (() => Promise<T>)[]): Promise<T[]> {
  const results: T[] = new Array(tasks.length)
  let next = 0
  await Promise.all(
    Array.from({ length: Math.min(width, tasks.length) }, async () => {
      while (next < tasks.length) {
        const i = next++
        results[i] = await tasks[i]!()
      }
    }),
  )
  return results
}

export const tally = (statuses: { status: number; body: { error?: string } }[]) => {
  const counts: Record<string, number> = {}
  for (const r of statuses) {
    const key = r.status === 200 ? "ok" : r.body.error!
    counts[key] = (counts[key] ?? 0) + 1
  }
  return counts
}
