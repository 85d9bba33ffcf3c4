/**
 * WORKERS=N on the Redis engine: a supervisor checks the port and starts N workers that share it with
 * SO_REUSEPORT; it restarts one that dies and passes SIGTERM on; a worker whose supervisor is gone stops by
 * itself; /metrics adds up every worker's series, whichever worker the kernel hands a scrape to.
 */
import { beforeAll, describe, expect, test } from "bun:test"
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs"
import { availableParallelism, tmpdir } from "node:os"
import { join } from "node:path"
import { parseConfig } from "../src/config"
import { processGauges } from "../src/http/scrape"
import { createMetrics, gauge, labelWorkers } from "../src/metrics"
import { compiledBinary } from "./support/binary"
import { fixtures, oneSale } from "./support/load"
import { exitOf, sourceCommand, startServer, type ServerProcess } from "./support/process"
import { isolated, processTree, sharedServices, until } from "./support/services"

const { cleanups } = fixtures()

/** Whether the process runs: a zombie (its parent gone, not yet reaped) serves nothing and holds no port. */
const alive = (pid: number) => existsSync(`/proc/${pid}/stat`) && !/^\d+ \(.*\) [ZX]/.test(readFileSync(`/proc/${pid}/stat`, "utf8"))
const workerPids = (s: ServerProcess) => processTree(s.proc.pid).slice(1).filter(alive)

/** A new connection each time, so that the kernel picks a worker for every request. */
const send = (base: string, method: string, path: string) => fetch(`${base}${path}`, { method, keepalive: false })

/** The values of the series of `name` whose labels include `labels`, added up. */
const sumOf = (text: string) => (name: string, labels = "") =>
  text.split("\n").filter((line) => line.startsWith(`${name}{`) || line.startsWith(`${name} `)).filter((line) => line.includes(labels)).reduce((total, line) => total + Number(line.slice(line.lastIndexOf(" ") + 1)), 0)

/** One scrape of /metrics, whichever worker answers it, as sumOf. */
const scrape = async (base: string) => sumOf(await (await send(base, "GET", "/metrics")).text())

/** The server with WORKERS=2 (as a flag) and PORT=0, once both workers' engines are ready. */
async function startWorkers(command: string[], cwd?: string): Promise<ServerProcess> {
  const env = await isolated()
  cleanups.push(() => env.close())
  const s = await startServer({ REDIS_URL: env.redisUrl, DATABASE_URL: env.databaseUrl, ...oneSale, SALE_ITEMS: "100" }, [...command, "--workers", "2"], cwd, { ready: false })
  cleanups.push(async () => {
    for (const pid of processTree(s.proc.pid).reverse()) {
      try {
        process.kill(pid, "SIGKILL")
      } catch {} // gone already
    }
  })
  await until("both workers to be ready", () => / listening on http:\S+ with 2 workers/.test(s.output()) && s.output().match(/worker \d: engine redis ready/g)?.length === 2, 20_000)
  return s
}

test("workers' series together: every worker's counters, histograms and process gauges, labelled with the worker; the engine's gauges once, unlabelled", () => {
  const [a, b] = [createMetrics(), createMetrics()]
  a.request("checkout", "reserved", performance.now())
  b.request("checkout", "reserved", performance.now())
  b.request("checkout", "internal") // rendered by b alone: an unexpected outcome is rendered once non-zero
  const engineGauges: string[] = []
  gauge(engineGauges, "flashsale_info", "The engine.", [['engine="redis"', 1]])
  const scraped = a.render([...engineGauges, ...processGauges({ watchers: 1, rateLimitEntries: { user: 3, ip: 0 } })])
  const other = b.render(processGauges({ watchers: 2, rateLimitEntries: { user: 4, ip: 0 } }))
  const merged = labelWorkers([{ worker: 1, text: scraped }, { worker: 2, text: other }], (family) => family === "flashsale_info")
  const sum = sumOf(merged)
  expect({
    reserved: sum("flashsale_requests_total", 'endpoint="checkout",outcome="reserved"'),
    internal: sum("flashsale_requests_total", 'endpoint="checkout",outcome="internal"'),
    timed: sum("flashsale_request_duration_seconds_count", 'endpoint="checkout"'),
    all: sum("flashsale_request_duration_seconds_bucket", 'endpoint="checkout",le="+Inf"'),
    info: sum("flashsale_info"),
    watchers: sum("flashsale_live_watchers"),
    users: sum("flashsale_rate_limit_entries", 'by="user"'),
  }).toEqual({ reserved: 2, internal: 1, timed: 2, all: 2, info: 1, watchers: 3, users: 7 })
  // Each worker's series whole, under its own label; the engine's gauge once, without one.
  expect(sum("flashsale_requests_total", 'endpoint="checkout",outcome="reserved",worker="1"')).toBe(1)
  expect(sum("flashsale_requests_total", 'endpoint="checkout",outcome="reserved",worker="2"')).toBe(1)
  expect(sum("flashsale_request_duration_seconds_bucket", 'endpoint="checkout",le="+Inf",worker="2"')).toBe(1)
  expect(sum("flashsale_live_watchers", 'worker="2"')).toBe(2)
  expect(merged).toContain('\nflashsale_info{engine="redis"} 1\n')
  // Still one family each, announced once, with its samples after it.
  const types = merged.split("\n").filter((line) => line.startsWith("# TYPE "))
  expect(new Set(types).size).toBe(types.length)
  expect(merged.indexOf('outcome="internal"')).toBeGreaterThan(merged.indexOf("# TYPE flashsale_requests_total"))
  expect(merged.indexOf('outcome="internal"')).toBeLessThan(merged.indexOf("# HELP flashsale_request_duration_seconds"))
})

describe("the compiled binary with WORKERS=2", () => {
  let binary: string
  let dir: string
  beforeAll(async () => {
    ;({ binary, dir } = await compiledBinary())
  }, 60_000)

  test("the workers share one port: checkouts and /status answer, and every scrape counts every worker's answers", async () => {
    const s = await startWorkers([binary], dir)
    expect(workerPids(s).length).toBe(2)
    const port = new URL(s.base).port
    expect(s.output()).toMatch(new RegExp(`worker 1: flashsale \\S+ listening on http://0\\.0\\.0\\.0:${port} `))
    expect(s.output()).toMatch(new RegExp(`worker 2: flashsale \\S+ listening on http://0\\.0\\.0\\.0:${port} `))
    for (let i = 1; i <= 20; i++) expect((await send(s.base, "POST", `/checkout?user_id=u${i}&id=${i}`)).status).toBe(200)
    const status = await send(s.base, "GET", "/status")
    expect(status.status).toBe(200)
    expect(((await status.json()) as { items_reserved: number }).items_reserved).toBe(20)
    for (let scrapes = 0; scrapes < 10; scrapes++) {
      const sum = await scrape(s.base)
      expect({
        checkouts: sum("flashsale_requests_total", 'endpoint="checkout"'),
        // Counted once answered: every scrape before this one, whichever worker answered it.
        scrapes: sum("flashsale_requests_total", 'endpoint="metrics"'),
        workers: sum("flashsale_workers"),
        scraped: sum("flashsale_workers_scraped"),
        // The engine's gauges are the same on every worker: one worker's, not a sum.
        reserved: sum("flashsale_sale_items", 'state="reserved"'),
        info: sum("flashsale_info"),
      }).toEqual({ checkouts: 20, scrapes, workers: 2, scraped: 2, reserved: 20, info: 1 })
    }
  }, 60_000)

  test("a worker killed with -9 is restarted, and the port answers meanwhile", async () => {
    const s = await startWorkers([binary], dir)
    const [victim, survivor] = workerPids(s)
    process.kill(victim!, "SIGKILL")
    // Reaped, so every thread of it is gone, and its socket with them.
    await until("the supervisor to see it die", () => new RegExp(`worker \\d \\(pid ${victim}\\) was killed by SIGKILL; restarting it`).test(s.output()))
    // The survivor answers; the new worker listens at once and answers 503 until its engine is ready, as a single process does.
    const answers = new Set<number>()
    for (let i = 0; i < 10; i++) answers.add((await send(s.base, "GET", "/status")).status)
    expect([...answers].filter((status) => status !== 200 && status !== 503)).toEqual([])
    await until("the worker to be restarted", () => workerPids(s).length === 2 && / listening again \(pid \d+\)/.test(s.output()) && s.output().match(/worker \d: engine redis ready/g)?.length === 3)
    expect(workerPids(s)).toContain(survivor!)
    for (let i = 0; i < 10; i++) expect((await send(s.base, "GET", "/status")).status).toBe(200)
    await until("every scrape to count both workers again", async () => (await scrape(s.base))("flashsale_workers_scraped") === 2)
    expect((await send(s.base, "POST", "/checkout?user_id=ann&id=1")).status).toBe(200)
  }, 60_000)

  test("SIGTERM to the supervisor stops every worker, and it exits 0 within 10 s", async () => {
    const s = await startWorkers([binary], dir)
    const pids = workerPids(s)
    expect((await send(s.base, "POST", "/checkout?user_id=ann&id=1")).status).toBe(200)
    const started = performance.now()
    expect(await s.stop("SIGTERM")).toBe(0)
    expect(performance.now() - started).toBeLessThan(10_000)
    expect(pids.filter(alive)).toEqual([])
    expect(s.output()).toContain("worker 1: stopped")
    expect(s.output()).toContain("worker 2: stopped")
    expect(s.output().trimEnd().split("\n").at(-1)).toMatch(/^\S+ stopped$/)
  }, 60_000)
})

test("kill -9 of the supervisor: its workers stop by themselves within a few seconds, and the port can be bound again", async () => {
  const s = await startWorkers(sourceCommand)
  const pids = workerPids(s)
  expect(pids.length).toBe(2)
  s.proc.kill("SIGKILL")
  await until("every worker to stop", () => pids.every((pid) => !alive(pid)), 5000)
  expect(s.output()).toMatch(/worker \d: supervisor \(pid \d+\) gone: no longer accepting/)
  // As the next start checks it: without SO_REUSEPORT, on every interface.
  await until("the port to be free", () => {
    Bun.serve({ port: Number(new URL(s.base).port), reusePort: false, fetch: () => new Response() }).stop(true)
    return true
  }, 2000)
}, 60_000)

describe("a port already taken is exit 2 naming PORT, and no worker starts", () => {
  const holders: [string, () => { port?: number; stop(): void }][] = [
    ["by a plain listener", () => Bun.listen({ hostname: "0.0.0.0", port: 0, socket: { data() {} } })],
    ["by a server with SO_REUSEPORT, which a worker could otherwise join", () => Bun.serve({ hostname: "0.0.0.0", port: 0, reusePort: true, fetch: () => new Response() })],
  ]
  for (const [name, hold] of holders) {
    test(name, async () => {
      const holder = hold()
      const port = holder.port!
      cleanups.push(async () => holder.stop())
      const { redisUrl, databaseUrl } = sharedServices()
      const { code, output } = await exitOf({ REDIS_URL: redisUrl, DATABASE_URL: databaseUrl, PORT: String(port) }, ["--workers", "2"])
      expect({ code, output }).toEqual({ code: 2, output: `invalid configuration:\n  PORT (--port) ${port}: the port is in use by another process; stop it or choose another PORT\n` })
    })
  }
})

test("a worker's exit 2 (a setting it cannot run with) stops every worker and the supervisor with exit 2 and the worker's message", async () => {
  const { redisUrl, databaseUrl } = sharedServices()
  const { code, output } = await exitOf({ REDIS_URL: `${redisUrl.replace(/\/\d*$/, "")}/99`, DATABASE_URL: databaseUrl }, ["--workers", "2"])
  expect(code).toBe(2)
  expect(output).toMatch(/worker \d: invalid configuration:\n  REDIS_URL \(--redis-url\) \S+: ERR DB index is out of range/)
  expect(output).toMatch(/worker \d \(pid \d+\) exited with status 2, a setting the server cannot run with; stopping every worker/)
}, 60_000)

describe("WORKERS is checked with the other settings", () => {
  test("the embedded engine refuses WORKERS=2: its sale's state lives in its one process", async () => {
    const dir = mkdtempSync(join(tmpdir(), "fs-workers-"))
    cleanups.push(async () => rmSync(dir, { recursive: true, force: true }))
    const { code, output } = await exitOf({ REDIS_URL: "", DATABASE_URL: "", DATA_DIR: dir, WORKERS: "2", SALE_ITEMS: "0" })
    expect(code).toBe(2)
    expect(output).toContain("WORKERS (--workers) 2: the embedded engine keeps a sale's state in its one process")
    expect(output).toContain("SALE_ITEMS (--sale-items)")
  })

  test("WORKERS=abc is exit 2 naming WORKERS", async () => {
    const { redisUrl, databaseUrl } = sharedServices()
    const { code, output } = await exitOf({ REDIS_URL: redisUrl, DATABASE_URL: databaseUrl, WORKERS: "abc" })
    expect({ code, output }).toEqual({ code: 2, output: 'invalid configuration:\n  WORKERS (--workers): expected a whole number from 1 to 1024, or auto (one per core), got "abc"\n' })
  })

  test("a whole number from 1, or auto: one per core", () => {
    const workers = (value: string) => {
      try {
        const parsed = parseConfig([], { REDIS_URL: "redis://127.0.0.1:6379/0", DATABASE_URL: "postgres://u@127.0.0.1/db", WORKERS: value })
        return parsed.help ? undefined : parsed.config.workers
      } catch {
        return "refused"
      }
    }
    expect(["1", "4", "auto", "0", "-1", "1.5", "", "1025"].map(workers)).toEqual([1, 4, availableParallelism(), "refused", "refused", "refused", "refused", "refused"])
  })
})
