/**
 * What a new user or an attacker tries at the edges: passwords that break naive parsing, two processes on one
 * data directory or port, a data directory that cannot be used, requests too large to serve, paths and
 * parameter names in unusual spellings.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { exitOf, rawRequest, request, startServer, type ServerProcess } from "./support/process"
import { freePort, isolated, sharedServices, startRedis, until } from "./support/services"

const main = join(import.meta.dir, "..", "src", "main.ts")
const dirs: string[] = []
const tempDir = (prefix: string) => {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  dirs.push(dir)
  return dir
}
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true })
})

const embedded = (dir: string, env: Record<string, string> = {}) => ({ REDIS_URL: "", DATABASE_URL: "", DATA_DIR: dir, SALE_PERIOD_SECONDS: "31536000", ...env })


describe("no secret is printed or served", () => {
  // Every character a URL parser may trip on: @ and : in the userinfo, / ? # & = and a percent sign.
  const redisPassword = "r3d@is:pa/ss?#&=%41x"
  const pgPassword = "pg@ss:w0/rd%2Fq"
  const spellings = [redisPassword, encodeURIComponent(redisPassword), pgPassword, encodeURIComponent(pgPassword), "w0/rd", "pa/ss"]
  let redis: Awaited<ReturnType<typeof startRedis>>
  let env: Awaited<ReturnType<typeof isolated>>
  let redisBase: string

  beforeAll(async () => {
    redis = await startRedis({ requirepass: redisPassword })
    redisBase = `127.0.0.1:${redis.port}`
    env = await isolated({ redisUrl: `redis://:${encodeURIComponent(redisPassword)}@${redisBase}` })
  }, 30_000)
  afterAll(async () => {
    await env?.close()
    await redis?.stop()
  })

  const expectNoSecret = (text: string) => {
    for (const secret of spellings) expect(text).not.toContain(secret)
  }

  const db = () => new URL(env.databaseUrl).pathname.slice(1)
  const pgUrl = (port = Number(new URL(sharedServices().databaseUrl).port)) => `postgres://postgres:${encodeURIComponent(pgPassword)}@127.0.0.1:${port}/${db()}`
  const variants = [
    ["the password in the userinfo", () => `redis://:${encodeURIComponent(redisPassword)}@${redisBase}/0`],
    ["the password as ?password=", () => `redis://${redisBase}/1?password=${encodeURIComponent(redisPassword)}`],
  ] as const

  for (const [index, [name, redisUrl]] of variants.entries()) {
    // The variants share one database: each sells its own item.
    const item = 3 + index
    test(`with ${name}: not in the log, /health, /metrics or any answer, through a Redis restart`, async () => {
      const server = await startServer({ REDIS_URL: redisUrl(), DATABASE_URL: pgUrl(), SALE_ITEMS: "20", SALE_PERIOD_SECONDS: "31536000" })
      const seen: string[] = []
      const read = async (path: string) => {
        const response = await fetch(`${server.base}${path}`, { method: path.startsWith("/checkout") || path.startsWith("/purchase") ? "POST" : "GET" })
        const text = await response.text()
        seen.push(text)
        return { status: response.status, text }
      }
      try {
        const held = JSON.parse((await read(`/checkout?user_id=ann&id=${item}`)).text)
        expect((await read(`/purchase?code=${held.code}`)).status).toBe(200)
        for (const path of ["/health", "/metrics", "/status", "/swagger/json", "/nowhere"]) await read(path)
        // Redis gone and back empty: the server logs the lost connection and rebuilds the sale.
        await redis.kill()
        await until("/health to say down", async () => (await read("/health")).status === 503)
        await redis.start()
        await until("/health to recover", async () => JSON.parse((await read("/health")).text).status !== "down", 20_000)
        expect(JSON.parse((await read(`/checkout?user_id=bob&id=${item}`)).text).error).toBe("item_sold")
      } finally {
        expect(await server.stop("SIGTERM")).toBe(0)
      }
      expect(server.output()).toContain("listening on")
      expect(server.output()).toContain("connection lost")
      expectNoSecret(server.output())
      expectNoSecret(seen.join("\n"))
    }, 60_000)
  }

  test("not while waiting for a PostgreSQL that is down", async () => {
    const server = Bun.spawn(["bun", main], { env: { ...process.env, PORT: "0", REDIS_URL: variants[0][1](), DATABASE_URL: pgUrl(await freePort()) }, stdout: "pipe", stderr: "pipe" })
    let output = ""
    const decoder = new TextDecoder()
    const reading = (async () => {
      for await (const chunk of server.stdout as ReadableStream<Uint8Array>) output += decoder.decode(chunk)
    })()
    await until("a 'waiting for' line", () => output.includes("waiting for"), 20_000)
    server.kill(9)
    await server.exited
    await reading
    expect(output).toContain("ECONNREFUSED")
    expectNoSecret(output + (await new Response(server.stderr).text()))
  }, 30_000)

  test("not in the exit-2 message of a bad configuration, whatever the URLs look like", async () => {
    for (const [redisUrl, databaseUrl] of [
      [`rediss://user:${redisPassword}@cache:6380/0`, `postgres://app:${pgPassword}@db/shop`],
      [`redis://cache:6379/0?password=${encodeURIComponent(redisPassword)}`, `mysql://app:${encodeURIComponent(pgPassword)}@db/shop`],
      [`redis//:${redisPassword}@cache`, `postgres://db/shop?password=${encodeURIComponent(pgPassword)}`],
    ]) {
      const { code, output } = await exitOf({ REDIS_URL: redisUrl!, DATABASE_URL: databaseUrl!, SALE_ITEMS: "0" })
      expect(code).toBe(2)
      expect(output).toContain("SALE_ITEMS")
      expectNoSecret(output)
    }
  }, 60_000)
})

describe("one process per data directory and per port", () => {
  test("a second embedded server on a data directory exits 2 naming it and the owner's pid; kill -9 of the owner never blocks the next", async () => {
    const dir = tempDir("fs-owned-")
    const owner = await startServer(embedded(dir, { SALE_ITEMS: "5" }))
    let next: ServerProcess | undefined
    try {
      const held = await request(owner.base, "POST", "/checkout?user_id=ann&id=1")
      expect((await request(owner.base, "POST", `/purchase?code=${held.body.code}`)).status).toBe(200)
      const second = await exitOf(embedded(dir, { SALE_ITEMS: "5" }))
      expect(second.code).toBe(2)
      expect(second.output).toContain("DATA_DIR")
      expect(second.output).toContain(dir)
      expect(second.output).toContain(`pid ${owner.proc.pid}`)
      // The owner kept selling alone: nobody else granted item 2.
      expect((await request(owner.base, "POST", "/checkout?user_id=bob&id=2")).status).toBe(200)
      await owner.stop("SIGKILL")
      next = await startServer(embedded(dir, { SALE_ITEMS: "5" }))
      expect(await request(next.base, "POST", "/checkout?user_id=cat&id=1")).toMatchObject({ status: 409, body: { error: "item_sold" } })
      expect(await request(next.base, "POST", "/checkout?user_id=cat&id=2")).toMatchObject({ status: 409, body: { error: "item_reserved" } })
    } finally {
      await owner.stop("SIGKILL")
      await next?.stop("SIGKILL")
    }
  }, 60_000)

  test("an owner whose owner.lock is deleted stops within seconds, so that a second owner never sells beside it", async () => {
    const dir = tempDir("fs-unlinked-")
    const owner = await startServer(embedded(dir))
    try {
      rmSync(join(dir, "owner.lock"))
      const code = await Promise.race([owner.proc.exited, Bun.sleep(10_000).then(() => "still running")])
      expect(code).toBe(1)
      expect(owner.output()).toContain("owner.lock was removed or replaced")
    } finally {
      await owner.stop("SIGKILL")
    }
  }, 30_000)

  test("a taken port is exit 2 naming PORT, for both engines", async () => {
    const first = await startServer(embedded(tempDir("fs-port-a-")))
    try {
      const port = new URL(first.base).port
      const services = sharedServices()
      for (const env of [embedded(tempDir("fs-port-b-"), { PORT: port }), { REDIS_URL: services.redisUrl, DATABASE_URL: (await isolatedDb()).databaseUrl, PORT: port }]) {
        const { code, output } = await exitOf(env)
        expect({ code, names: output.includes(`PORT (--port) ${port}`) && output.includes("in use") }).toEqual({ code: 2, names: true })
      }
      expect((await request(first.base, "GET", "/health")).body.status).toBe("ok")
    } finally {
      await first.stop("SIGKILL")
    }
  }, 60_000)

  test("a DATA_DIR that cannot be used is exit 2 naming DATA_DIR and what is wrong", async () => {
    const file = join(tempDir("fs-baddir-"), "plain-file")
    writeFileSync(file, "not a directory")
    const storeIsDir = tempDir("fs-storedir-")
    mkdirSync(join(storeIsDir, "flashsale.sqlite"))
    const notDb = tempDir("fs-notdb-")
    writeFileSync(join(notDb, "flashsale.sqlite"), "x".repeat(4096))
    for (const [dir, reason] of [
      [file, "is a file, not a directory"],
      [join(file, "data"), "a part of the path is a file"],
      [storeIsDir, "cannot be opened"],
      [notDb, "not a SQLite database"],
    ]) {
      const { code, output } = await exitOf(embedded(dir!))
      expect(code).toBe(2)
      expect(output).toContain(`DATA_DIR (--data-dir) ${JSON.stringify(dir)}`)
      expect(output).toContain(reason!)
      expect(output).not.toContain("    at ")
    }
  }, 30_000)
})

const databases: Awaited<ReturnType<typeof isolated>>[] = []
async function isolatedDb() {
  const env = await isolated()
  databases.push(env)
  return env
}
afterAll(async () => {
  for (const env of databases) await env.close()
})

describe("requests of any size and spelling", () => {
  let server: ServerProcess
  beforeAll(async () => {
    server = await startServer(embedded(tempDir("fs-edge-"), { SALE_ITEMS: "50" }))
  }, 30_000)
  afterAll(async () => {
    await server?.stop("SIGKILL")
  })

  const send = (line: string, headers: string[] = [], body = "") => rawRequest(server.base, [line, `host: ${new URL(server.base).host}`, ...headers].join("\r\n"), body)

  test("a URL too long is 414 url_too_long, a declared body too large is 413 body_too_large, each with the JSON error body", async () => {
    for (const size of [9_000, 20_000, 100_000]) {
      const answer = await send(`GET /status?x=${"a".repeat(size)} HTTP/1.1`)
      expect({ status: answer.status, type: answer.headers["content-type"], error: answer.json?.error }).toEqual({ status: 414, type: "application/json", error: "url_too_long" })
    }
    const body = await send("POST /checkout?user_id=ann&id=1 HTTP/1.1", ["content-type: application/json", "content-length: 1000000"], "x".repeat(1_000_000))
    expect({ status: body.status, error: body.json?.error }).toEqual({ status: 413, error: "body_too_large" })
    // Nothing was decided for the refused request.
    expect((await request(server.base, "POST", "/checkout?user_id=bob&id=1")).status).toBe(200)
  })

  test("within the limits, large headers are ignored, a small body is read, and one that cannot be read is 400", async () => {
    expect((await send("GET /status HTTP/1.1", [`x-padding: ${"p".repeat(20_000)}`])).status).toBe(200)
    const json = '{"user_id": "cat", "id": 2}'
    expect((await send("POST /checkout HTTP/1.1", ["content-type: application/json", `content-length: ${json.length}`], json)).json).toMatchObject({ message: "success", item: { id: 2 } })
    expect((await send("POST /checkout?user_id=cat&id=3 HTTP/1.1", ["content-type: application/json", "content-length: 5"], "{bad}")).json).toMatchObject({ error: "invalid_request" })
    // A body sent without a length (chunked) is bounded the same way: 64 KiB at most.
    const chunk = "x".repeat(70_000)
    const chunked = await send("POST /checkout HTTP/1.1", ["content-type: application/json", "transfer-encoding: chunked"], `${chunk.length.toString(16)}\r\n${chunk}\r\n0\r\n\r\n`)
    expect({ status: chunked.status, error: chunked.json?.error }).toEqual({ status: 413, error: "body_too_large" })
  })

  test("a path is served as what it means, as a proxy in front would route it", async () => {
    const spellings = ["/swagger/../checkout", "/./checkout", "//checkout", "/%63heckout", "/swagger/%2e%2e/checkout", "/../checkout"]
    for (const [i, path] of spellings.entries()) {
      const answer = await send(`POST ${path}?user_id=dee${i}&id=${10 + i} HTTP/1.1`)
      expect({ path, status: answer.status, item: answer.json?.item?.id }).toEqual({ path, status: 200, item: 10 + i })
    }
    expect((await send("GET /swagger/../status HTTP/1.1")).json).toHaveProperty("items_total", 50)
    expect(await send("GET /%63heckout HTTP/1.1")).toMatchObject({ status: 405, json: { error: "method_not_allowed" } })
    expect(await send("GET /checkout/ HTTP/1.1")).toMatchObject({ status: 405, json: { error: "method_not_allowed" } })
    expect((await send("POST /checkout/?user_id=eve&id=30 HTTP/1.1")).json).toMatchObject({ message: "success" })
    expect(await send("GET /swagger/../../etc/passwd HTTP/1.1")).toMatchObject({ status: 404, json: { error: "not_found" } })
  })

  test("a Host the runtime cannot make a URL of, a CONNECT or a fragment still gets the JSON answer", async () => {
    const bad = (line: string) => rawRequest(server.base, `${line}\r\nhost: x:99999`)
    expect(await bad("GET /nope HTTP/1.1")).toMatchObject({ status: 404, json: { error: "not_found" } })
    expect(await bad("POST /checkout?user_id=a&id=x HTTP/1.1")).toMatchObject({ status: 400, json: { error: "invalid_request" } })
    expect(await bad(`GET /status?x=${"a".repeat(9000)} HTTP/1.1`)).toMatchObject({ status: 414, json: { error: "url_too_long" } })
    const connect = await rawRequest(server.base, `CONNECT ${new URL(server.base).host} HTTP/1.1\r\nhost: ${new URL(server.base).host}`)
    expect({ client: connect.status >= 400 && connect.status < 500, error: typeof connect.json?.error }).toEqual({ client: true, error: "string" })
    expect((await send("GET /status# HTTP/1.1")).json).toHaveProperty("items_total", 50)
    expect(await send("GET /nope#x HTTP/1.1")).toMatchObject({ status: 404, json: { error: "not_found" } })
  })

  test("HEAD /events is 405 naming GET, and leaves no watcher behind", async () => {
    for (let i = 0; i < 3; i++) {
      const answer = await send("HEAD /events HTTP/1.1")
      expect({ status: answer.status, allow: answer.headers.allow }).toEqual({ status: 405, allow: "GET" })
    }
    expect(await (await fetch(`${server.base}/metrics`)).text()).toContain("flashsale_live_watchers 0")
  })

  test("a short Host header routes like any other", async () => {
    const answer = await rawRequest(server.base, "GET /status HTTP/1.1\r\nhost: a")
    expect(answer.status).toBe(200)
    expect(answer.json).toHaveProperty("items_total", 50)
  })
})
