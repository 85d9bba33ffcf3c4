/**
 * How the server starts and stops, as a new user meets it: it listens at once and says in /health what it
 * waits for, a setting that waiting cannot fix is exit 2 naming it, HOST, --version, and a clean stop.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import pkg from "../package.json"
import { freePort, isolated, startPostgres, startRedis, until, type PostgresServer, type RedisServer } from "./support/services"
import { exitOf, request, sourceCommand, startServer } from "./support/process"
import { fixtures, oneSale } from "./support/load"

const { cleanups, server } = fixtures()
const tempDir = (prefix: string) => {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  cleanups.push(async () => rmSync(dir, { recursive: true, force: true }))
  return dir
}

test("--version prints the version of package.json and exits 0, whatever else is set", () => {
  const run = Bun.spawnSync([...sourceCommand, "--version"], { env: { ...process.env, PORT: "not a port" }, stdout: "pipe" })
  expect({ code: run.exitCode, out: run.stdout.toString().trim() }).toEqual({ code: 0, out: `flashsale ${pkg.version}` })
})

test("the log, /metrics and the OpenAPI document say the same version", async () => {
  const s = await server({ DATA_DIR: tempDir("fs-version-"), REDIS_URL: "", DATABASE_URL: "" })
  expect(s.output()).toContain(`flashsale ${pkg.version} listening on`)
  expect((await request(s.base, "GET", "/swagger/json")).body.info.version).toBe(pkg.version)
  expect(await (await fetch(`${s.base}/metrics`)).text()).toContain(`version="${pkg.version}"`)
})

test("HOST=127.0.0.1 listens on loopback only and the log says so; the default listens on every interface", async () => {
  const loopback = await server({ DATA_DIR: tempDir("fs-host-"), REDIS_URL: "", DATABASE_URL: "", HOST: "127.0.0.1" })
  const port = new URL(loopback.base).port
  expect(loopback.output()).toContain(`listening on http://127.0.0.1:${port} `)
  expect((await fetch(`http://127.0.0.1:${port}/health`)).status).toBe(200)
  // 127.0.0.2 reaches a socket bound to every interface, never one bound to 127.0.0.1.
  expect(await fetch(`http://127.0.0.2:${port}/health`).then((r) => r.status, () => "refused")).toBe("refused")
  const every = await server({ DATA_DIR: tempDir("fs-host-"), REDIS_URL: "", DATABASE_URL: "" })
  const other = new URL(every.base).port
  expect(every.output()).toContain(`listening on http://0.0.0.0:${other} `)
  expect((await fetch(`http://127.0.0.2:${other}/health`)).status).toBe(200)
})

test("one message names every bad setting: DATA_DIR and CATALOG_FILE with the others", async () => {
  const dir = tempDir("fs-bad-")
  writeFileSync(join(dir, "file"), "x")
  writeFileSync(join(dir, "items.csv"), "id,name,image\n1,Mug,/mug.png\n1,Cup,/cup.png\n")
  const { code, output } = await exitOf({ DATA_DIR: join(dir, "file", "data"), SALE_ITEMS: "abc", CATALOG_FILE: join(dir, "items.csv"), REDIS_URL: "", DATABASE_URL: "" })
  expect(code).toBe(2)
  for (const part of ["SALE_ITEMS (--sale-items)", "DATA_DIR (--data-dir)", "a part of the path is a file", "CATALOG_FILE (--catalog-file)", "line 3: duplicate id 1"]) expect(output).toContain(part)
})

describe("while Redis or PostgreSQL is not there yet", () => {
  test("Redis down: it listens at once, /health is 503 saying it waits for Redis (address redacted), and it sells once Redis is up", async () => {
    const redis = await startRedis({ requirepass: "s3cret-pass" })
    cleanups.push(() => redis.stop())
    await redis.kill()
    const env = await isolated()
    cleanups.push(() => env.close())
    const url = `redis://:s3cret-pass@127.0.0.1:${redis.port}/0`
    const s = await startServer({ REDIS_URL: url, DATABASE_URL: env.databaseUrl, ...oneSale }, undefined, undefined, { ready: false })
    cleanups.push(() => s.stop("SIGKILL"))
    const waiting = await until("/health to say what it waits for", async () => {
      const health = await request(s.base, "GET", "/health")
      return health.body.checks?.starting?.error ? health : undefined
    })
    expect(waiting).toMatchObject({ status: 503, body: { status: "down", checks: { starting: { waiting_for: "Redis", address: `redis://:***@127.0.0.1:${redis.port}/0` } } } })
    expect(await request(s.base, "POST", "/checkout?user_id=ann&id=1")).toMatchObject({ status: 503, body: { error: "unavailable" } })
    await redis.start()
    await until("the engine to be ready", async () => (await request(s.base, "GET", "/health")).status === 200, 20_000)
    expect((await request(s.base, "POST", "/checkout?user_id=ann&id=1")).status).toBe(200)
    expect(s.output()).not.toContain("s3cret-pass")
    expect(s.output()).toContain(`waiting for Redis at redis://:***@127.0.0.1:${redis.port}/0: `)
  }, 30_000)

  test("PostgreSQL down and the sale to rebuild: /health is 503 saying it waits for PostgreSQL, and it sells once PostgreSQL is up", async () => {
    const pg = await startPostgres()
    cleanups.push(() => pg.stop())
    const env = await isolated({ databaseUrl: pg.url })
    cleanups.push(() => env.close())
    await pg.halt()
    const s = await startServer({ REDIS_URL: env.redisUrl, DATABASE_URL: env.databaseUrl, ...oneSale }, undefined, undefined, { ready: false })
    cleanups.push(() => s.stop("SIGKILL"))
    const waiting = await until("/health to say it waits for PostgreSQL", async () => {
      const health = await request(s.base, "GET", "/health")
      return /PostgreSQL/.test(health.body.checks?.starting?.waiting_for ?? "") ? health : undefined
    })
    expect(waiting!.status).toBe(503)
    expect(waiting!.body.checks.starting.address).toBe(env.databaseUrl)
    await pg.start()
    await until("the engine to be ready", async () => (await request(s.base, "GET", "/health")).status === 200, 20_000)
    expect((await request(s.base, "POST", "/checkout?user_id=ann&id=1")).status).toBe(200)
  }, 30_000)
})

describe("a setting that waiting cannot fix is exit 2 naming its variable, with no secret", () => {
  let redis: RedisServer
  let pg: PostgresServer
  let plainRedis: string
  beforeAll(async () => {
    ;[redis, pg] = await Promise.all([startRedis({ requirepass: "right-redis-pass" }), startPostgres({ password: "right-pg-pass" })])
    plainRedis = (await isolated()).redisUrl
  }, 60_000)
  afterAll(async () => {
    await Promise.allSettled([redis?.stop(), pg?.stop()])
  })

  const goodRedis = () => `redis://:right-redis-pass@127.0.0.1:${redis.port}/0`
  const pgWith = (change: (url: URL) => void) => {
    const url = new URL(pg.url)
    change(url)
    return url.toString()
  }

  const cases: [string, () => Record<string, string>, string, RegExp][] = [
    ["a PostgreSQL password refused", () => ({ REDIS_URL: goodRedis(), DATABASE_URL: pgWith((u) => (u.password = "wrong-pg-pass")) }), "DATABASE_URL", /password is refused/],
    ["a database that does not exist", () => ({ REDIS_URL: goodRedis(), DATABASE_URL: pgWith((u) => (u.pathname = "/nosuchdb")) }), "DATABASE_URL", /database does not exist/],
    ["a role that does not exist", () => ({ REDIS_URL: goodRedis(), DATABASE_URL: pgWith((u) => (u.username = "nobody")) }), "DATABASE_URL", /role is refused|password is refused/],
    ["a URL parameter the server rejects", () => ({ REDIS_URL: goodRedis(), DATABASE_URL: pgWith((u) => u.searchParams.set("password", "x")) }), "DATABASE_URL", /rejects a parameter/],
    ["TLS asked of a PostgreSQL without it", () => ({ REDIS_URL: goodRedis(), DATABASE_URL: pgWith((u) => u.searchParams.set("sslmode", "require")) }), "DATABASE_URL", /TLS/],
    ["a Redis password refused", () => ({ REDIS_URL: `redis://:wrong-redis-pass@127.0.0.1:${redis.port}/0`, DATABASE_URL: pg.url }), "REDIS_URL", /WRONGPASS/],
    ["no password for a Redis that needs one", () => ({ REDIS_URL: `redis://127.0.0.1:${redis.port}/0`, DATABASE_URL: pg.url }), "REDIS_URL", /NOAUTH/],
    ["a Redis database index it does not have", () => ({ REDIS_URL: `redis://:right-redis-pass@127.0.0.1:${redis.port}/99`, DATABASE_URL: pg.url }), "REDIS_URL", /DB index is out of range/],
    ["TLS asked of a Redis without it", () => ({ REDIS_URL: plainRedis.replace("redis://", "rediss://"), DATABASE_URL: pg.url }), "REDIS_URL", /speaks plain Redis/],
  ]
  for (const [name, env, variable, reason] of cases) {
    test.concurrent(name, async () => {
      const { code, output } = await exitOf({ ...env(), ...oneSale })
      expect({ code, names: output.includes(`${variable} (--`), reason: reason.test(output) }).toEqual({ code: 2, names: true, reason: true })
      for (const secret of ["right-redis-pass", "wrong-redis-pass", "right-pg-pass", "wrong-pg-pass"]) expect(output).not.toContain(secret)
    }, 30_000)
  }

  test("both wrong at once: one message names both", async () => {
    const { code, output } = await exitOf({ REDIS_URL: `redis://:nope@127.0.0.1:${redis.port}/0`, DATABASE_URL: pgWith((u) => (u.pathname = "/nosuchdb")), ...oneSale })
    expect(code).toBe(2)
    expect(output).toContain("REDIS_URL (--redis-url)")
    expect(output).toContain("DATABASE_URL (--database-url)")
  })

  test("a PostgreSQL that is merely down is waited for, not refused: the Redis engine sells from its journal", async () => {
    const port = await freePort()
    const s = await startServer({ REDIS_URL: goodRedis(), DATABASE_URL: `postgres://postgres@127.0.0.1:${port}/postgres`, ...oneSale, SALE_PERIOD_SECONDS: "3600" }, undefined, undefined, { ready: false })
    cleanups.push(() => s.stop("SIGKILL"))
    // A fresh Redis has no current sale: preparing it needs PostgreSQL, so it waits, saying so.
    const health = await until("/health to say what it waits for", async () => {
      const h = await request(s.base, "GET", "/health")
      return h.body.checks?.starting ? h : undefined
    })
    expect(health!.status).toBe(503)
    expect(s.proc.exitCode).toBeNull()
  })
})

test("a clean SIGTERM on the Redis engine logs no error, only the stop", async () => {
  const env = await isolated()
  cleanups.push(() => env.close())
  const s = await startServer({ REDIS_URL: env.redisUrl, DATABASE_URL: env.databaseUrl, ...oneSale })
  expect((await request(s.base, "POST", "/checkout?user_id=ann&id=1")).status).toBe(200)
  expect(await s.stop("SIGTERM")).toBe(0)
  const after = s.output().slice(s.output().indexOf("SIGTERM"))
  expect(after).toContain("stopped")
  expect(after).not.toMatch(/error|lost|fail|reconnect/i)
})
