/** The compiled executable serves the contract from any directory, with its Lua scripts and docs assets inside. */
import { afterAll, beforeAll, expect, test } from "bun:test"
import { existsSync, mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { isolated, scalar } from "./support/services"
import { request, startServer, type ServerProcess } from "./support/process"
import { compiledBinary } from "./support/binary"

let dir: string
let binary: string
let env: Awaited<ReturnType<typeof isolated>>
let server: ServerProcess

beforeAll(async () => {
  ;({ dir, binary } = await compiledBinary())
  env = await isolated()
  server = await startServer({ REDIS_URL: env.redisUrl, DATABASE_URL: env.databaseUrl, SALE_ITEMS: "10", SALE_PERIOD_SECONDS: "31536000" }, [binary], dir)
}, 60_000)

afterAll(async () => {
  await server?.stop()
  await env?.close()
})

test("the binary is healthy, sells an item and serves its docs from a directory without the sources", async () => {
  expect((await request(server.base, "GET", "/health")).body.status).toBe("ok")
  const held = await request(server.base, "POST", "/checkout?user_id=ann&id=item4")
  expect(held).toMatchObject({ status: 200, body: { item: { id: 4 } } })
  expect(await request(server.base, "POST", `/purchase?code=${held.body.code}`)).toMatchObject({ status: 200, body: { user_id: "ann" } })
  const docs = await request(server.base, "GET", "/swagger/json")
  expect(Object.keys(docs.body.paths).sort()).toEqual([
    "/admin/actions", "/admin/holds/{code}", "/admin/sales", "/admin/sales/{id}", "/admin/sales/{id}/audit", "/admin/sales/{id}/end", "/admin/sales/{id}/orders", "/admin/sales/{id}/pause",
    "/admin/sales/{id}/report", "/admin/sales/{id}/resume", "/admin/users/{user_id}",
    "/checkout", "/events", "/health", "/items", "/items/{id}", "/metrics", "/purchase", "/status",
  ])
  const ui = await fetch(`${server.base}/swagger/scalar.js`)
  expect(ui.status).toBe(200)
  expect((await ui.arrayBuffer()).byteLength).toBeGreaterThan(100_000)
  const page = await fetch(`${server.base}/`)
  expect(page.headers.get("content-type")).toContain("text/html")
  expect(await page.text()).toContain('data-field="items_sold"')
  const metrics = await (await fetch(`${server.base}/metrics`)).text()
  expect(metrics).toContain('flashsale_requests_total{endpoint="checkout",outcome="reserved"} 1')
})

test("with neither REDIS_URL nor DATABASE_URL it runs the embedded engine, keeping its data in ./data of its directory", async () => {
  const cwd = mkdtempSync(join(tmpdir(), "fs-bin-embedded-"))
  const embedded = await startServer({ SALE_ITEMS: "5", SALE_PERIOD_SECONDS: "31536000" }, ["env", "-u", "REDIS_URL", "-u", "DATABASE_URL", binary], cwd)
  try {
    expect(embedded.output()).toContain("engine embedded")
    expect(await request(embedded.base, "GET", "/health")).toMatchObject({ status: 200, body: { status: "ok", checks: { engine: "embedded" } } })
    const held = await request(embedded.base, "POST", "/checkout?user_id=ann&id=2")
    expect((await request(embedded.base, "POST", `/purchase?code=${held.body.code}`)).status).toBe(200)
    expect(await embedded.stop("SIGTERM")).toBe(0)
    expect(existsSync(join(cwd, "data", "flashsale.sqlite"))).toBe(true)
  } finally {
    await embedded.stop("SIGKILL")
    rmSync(cwd, { recursive: true, force: true })
  }
})

test("SIGTERM stops it cleanly after writing the ledger", async () => {
  await request(server.base, "POST", "/checkout?user_id=bob&id=5")
  expect(await server.stop("SIGTERM")).toBe(0)
  expect(await scalar(env.sql`select count(*)::int as n from checkout_attempts where user_id = 'bob'`)).toBe(1)
  expect(server.output()).toContain("stopped")
})

test("a bad configuration exits 2 naming every bad variable, and never prints a password", () => {
  const run = Bun.spawnSync([binary, "--sale-items", "0"], { env: { ...process.env, PORT: "x", REDIS_URL: "redis://u:hunter2@h:1", DATABASE_URL: "mysql://u:hunter2@h/db" }, stderr: "pipe", cwd: dir })
  const message = run.stderr.toString()
  expect(run.exitCode).toBe(2)
  expect(message).toContain("PORT")
  expect(message).toContain("SALE_ITEMS")
  expect(message).toContain("DATABASE_URL")
  expect(message).not.toContain("hunter2")
})

test("--help lists every variable with its default and exits 0", () => {
  const run = Bun.spawnSync([binary, "--help"], { stdout: "pipe", cwd: dir })
  expect(run.exitCode).toBe(0)
  for (const name of ["PORT", "REDIS_URL", "DATABASE_URL", "DATA_DIR", "SALE_ITEMS", "USER_LIMIT", "SALE_PERIOD_SECONDS", "HOLD_SECONDS", "CATALOG_FILE", "RATE_LIMIT_PER_USER", "RATE_LIMIT_PER_IP", "RATE_LIMIT_BURST_SECONDS", "TRUST_PROXY_HOPS"]) expect(run.stdout.toString()).toContain(name)
})
