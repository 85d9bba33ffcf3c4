/**
 * The backends the end-to-end suites run the compiled binary on: the embedded engine, Redis with PostgreSQL (two
 * instances), and a Redis Cluster with sales split into 6 shards (two instances, one cluster for the whole file).
 * Each gives the servers' settings and a way to read (and write) the durable store behind them.
 */
import { Database } from "bun:sqlite"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import type Redis from "ioredis"
import { isolated, startRedisCluster, type RedisCluster } from "./services"
import type { Query } from "./invariants"

export type BackendEnv = {
  env: Record<string, string>
  instances: number
  query: Query
  write(text: string): Promise<void>
  /** Redis, to plant differences in a whole sale's keys (not on the cluster, whose sales are split). */
  redis?: Redis
  /** Empties Redis (Redis engines). */
  flush?(): Promise<void>
  close(): Promise<void>
}
/** `bigExport`: whether to stream 100,000 orders here (the cluster's store is PostgreSQL, as for one Redis). */
export type Backend = { name: string; bigExport?: false; env(): Promise<BackendEnv> }

export const backends: Backend[] = [
  {
    name: "embedded engine",
    async env() {
      const dir = mkdtempSync(join(tmpdir(), "fs-backend-"))
      let db: Database | undefined
      const open = () => (db ??= new Database(join(dir, "flashsale.sqlite")))
      return {
        env: { DATA_DIR: dir, REDIS_URL: "", DATABASE_URL: "" },
        instances: 1,
        query: async (text) => open().query(text).all() as Record<string, any>[],
        write: async (text) => void open().run(text),
        close: async () => {
          db?.close()
          rmSync(dir, { recursive: true, force: true })
        },
      }
    },
  },
  {
    name: "Redis engine, two instances",
    async env() {
      const e = await isolated()
      return {
        env: { REDIS_URL: e.redisUrl, DATABASE_URL: e.databaseUrl },
        instances: 2,
        query: (text) => e.sql.unsafe(text) as Promise<Record<string, any>[]>,
        write: async (text) => void (await e.sql.unsafe(text)),
        redis: e.redis,
        flush: () => e.redis.flushdb().then(() => {}),
        close: () => e.close(),
      }
    },
  },
  {
    name: "Redis Cluster, sales split into 6 shards, two instances",
    bigExport: false,
    async env() {
      cluster ??= await startRedisCluster()
      await cluster.flush()
      const e = await isolated()
      return {
        env: { REDIS_URL: cluster.nodes[0]!.url, DATABASE_URL: e.databaseUrl, SALE_SHARDS: "6" },
        instances: 2,
        query: (text) => e.sql.unsafe(text) as Promise<Record<string, any>[]>,
        write: async (text) => void (await e.sql.unsafe(text)),
        flush: () => cluster!.flush(),
        close: () => e.close(),
      }
    },
  },
]

let cluster: RedisCluster | undefined

/** Stops the cluster if a backend started one: call after all of a file's tests (a later file starts its own). */
export async function stopBackends(): Promise<void> {
  await cluster?.stop()
  cluster = undefined
}

