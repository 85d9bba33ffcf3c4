/**
 * `bun run bench`: builds the binary, starts throwaway redis-server and postgres and the server on free
 * ports, runs each scenario with wrk on 127.0.0.1 for a bounded time, then verifies the sale's invariants
 * against PostgreSQL and Redis. Prints a table, writes JSON to bench/results/, exits 1 on any violation.
 *
 *   bun run bench [--binary path/to/flashsale (another build, to compare)] [--engine redis|embedded|both] [--scenario flood,sellout] [--duration 10] [--connections 64] [--instances 2] [--soak 60]
 *                 [--shards 6 (SALE_SHARDS)] [--redis cluster (3 masters, 3 replicas, instead of one redis-server)] [--workers 2 (WORKERS, Redis engine)]
 *
 * With the Redis engine every scenario also reports, per Redis master, its share of the script calls and
 * its CPU per request (INFO commandstats and /proc of each master).
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { Database } from "bun:sqlite"
import { join, resolve } from "node:path"
import { tmpdir } from "node:os"
import Redis from "ioredis"
import postgres from "postgres"
import { startPostgres, startRedis, startRedisCluster, until, type PostgresServer } from "../test/support/services"
import { clusterClient, type RedisClient } from "../src/redis/connect"
import { startServer, type ServerProcess } from "../test/support/process"
import { saleOfPart, saleRegistryKey, statsKey, usersKey } from "../src/redis/keys"
import { journalBacklog } from "../src/redis/journal"
import { options as configOptions } from "../src/config"
import { cpuMeter, cpuSeconds } from "./cpu"
import { saleViolations } from "../test/support/invariants"

const root = join(import.meta.dir, "..")
const wrkDir = join(import.meta.dir, "wrk")

type EngineKind = "redis" | "embedded"
type Options = { binary?: string; engines: EngineKind[]; scenarios: string[]; duration: number; connections: number; instances: number; soak: number; threads: number; items: number; limit: number; shards: number; workers: number; redis: "single" | "cluster" }
const scenarioNames = ["flood", "fresh", "sellout", "purchase_storm", "refusals", "mixed", "hot", "soak", "instances"]
/** The hot item: one product of this many units (a catalog of one line), wanted by 100,000 users. */
const hotUnits = 10_000

function parseArgs(argv: string[]): Options {
  const options: Options = { engines: ["redis", "embedded"], scenarios: scenarioNames, duration: 10, connections: 64, instances: 2, soak: 60, threads: 2, items: 10_000, limit: 10, shards: 1, workers: 1, redis: "single" }
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i]!.split("=", 2)
    const value = inline ?? argv[++i]
    if (value === undefined) throw new Error(`${flag} needs a value`)
    if (flag === "--engine") {
      if (!["redis", "embedded", "both"].includes(value)) throw new Error(`--engine takes redis, embedded or both, got ${value}`)
      options.engines = value === "both" ? ["redis", "embedded"] : [value as EngineKind]
    } else if (flag === "--redis") {
      if (!["single", "cluster"].includes(value)) throw new Error(`--redis takes single or cluster, got ${value}`)
      options.redis = value as "single" | "cluster"
    } else if (flag === "--binary") {
      // Relative to where the command runs, not to where the servers run (a temp dir).
      options.binary = resolve(value)
      if (!existsSync(options.binary)) throw new Error(`--binary ${value}: no such file (${options.binary})`)
    } else if (flag === "--scenario") {
      options.scenarios = value.split(",")
      const unknown = options.scenarios.filter((s) => !scenarioNames.includes(s))
      if (unknown.length) throw new Error(`unknown scenario ${unknown.join(", ")}; known: ${scenarioNames.join(", ")}`)
    } else if (["--duration", "--connections", "--instances", "--soak", "--threads", "--shards", "--workers"].includes(flag!)) {
      const n = Number(value)
      if (!Number.isInteger(n) || n < 1) throw new Error(`${flag} takes a whole number, got ${value}`)
      options[flag!.slice(2) as "duration"] = n
    } else throw new Error(`unknown option ${flag}`)
  }
  return options
}

type WrkResult = {
  rps: number
  requests: number
  errors: number
  p50_ms: number
  p90_ms: number
  p99_ms: number
  max_ms: number
  counts: Record<string, number>
  sent: Record<string, number>
}

async function wrk(script: string, base: string, seconds: number, connections: number, threads: number, env: Record<string, string> = {}): Promise<WrkResult> {
  const proc = Bun.spawn(["wrk", `-t${threads}`, `-c${connections}`, `-d${seconds}s`, "--timeout", "5s", "-s", join(wrkDir, script), base], {
    env: { ...process.env, WRK_LIB: wrkDir, WRK_THREADS: String(threads), ...env },
    stdout: "pipe",
    stderr: "pipe",
  })
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited])
  const line = /WRKRESULT (.*)/.exec(out)
  if (code !== 0 || !line) throw new Error(`wrk ${script} failed (${code}): ${err}\n${out}`)
  const parsed = JSON.parse(line[1]!)
  return { ...parsed, rps: parsed.requests / (parsed.duration_us / 1e6) }
}

function merge(results: WrkResult[]): WrkResult {
  const sum = (key: "counts" | "sent") => {
    const total: Record<string, number> = {}
    for (const r of results) for (const [k, v] of Object.entries(r[key])) total[k] = (total[k] ?? 0) + v
    return total
  }
  return {
    rps: results.reduce((a, r) => a + r.rps, 0),
    requests: results.reduce((a, r) => a + r.requests, 0),
    errors: results.reduce((a, r) => a + r.errors, 0),
    p50_ms: Math.max(...results.map((r) => r.p50_ms)),
    p90_ms: Math.max(...results.map((r) => r.p90_ms)),
    p99_ms: Math.max(...results.map((r) => r.p99_ms)),
    max_ms: Math.max(...results.map((r) => r.max_ms)),
    counts: sum("counts"),
    sent: sum("sent"),
  }
}

const sumOf = (counts: Record<string, number>, prefix: string) => Object.entries(counts).filter(([k]) => k.startsWith(prefix)).reduce((a, [, v]) => a + v, 0)

function rssMb(pid: number): number {
  const status = require("node:fs").readFileSync(`/proc/${pid}/status`, "utf8") as string
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024
}

async function main() {
  const options = parseArgs(Bun.argv.slice(2))
  let binary = options.binary
  if (!binary) {
    binary = join(root, "dist", "flashsale")
    console.log("building dist/flashsale")
    const build = Bun.spawnSync(["bun", "run", "build"], { cwd: root, stdout: "ignore", stderr: "pipe" })
    if (build.exitCode !== 0) throw new Error(`build failed: ${build.stderr.toString()}`)
  }
  if (!Bun.which("wrk")) throw new Error("wrk is not installed: apt-get install wrk")

  // Redis and PostgreSQL only when a scenario runs on them.
  const cleanup: (() => Promise<unknown>)[] = []
  let services: { pgServer: PostgresServer; admin: postgres.Sql; redisTarget: RedisTarget } | undefined
  if (options.engines.includes("redis")) {
    const pgServer = await startPostgres()
    const admin = postgres(pgServer.url, { max: 1, onnotice: () => {} })
    cleanup.push(() => pgServer.stop(), () => admin.end())
    services = { pgServer, admin, redisTarget: await startRedisTarget(options.redis, cleanup) }
  }

  try {
    const hello = await startServer({}, ["bun", join(import.meta.dir, "hello.ts")], undefined, { ready: false })
    const helloCpu = cpuMeter({ server: [hello.proc.pid] })
    const baseline = await wrk("hello.lua", hello.base, options.duration, options.connections, options.threads)
    const baselineCpu = helloCpu(baseline.requests)
    await hello.stop()
    console.log(`hello-world baseline: ${Math.round(baseline.rps)} req/s, p99 ${baseline.p99_ms} ms, ${baselineCpu.total} us CPU/request`)

    const rows: Record<string, unknown>[] = []
    let violations = 0
    for (const engine of options.engines) {
      for (const scenario of options.scenarios) {
        if (engine === "embedded" && scenario === "instances") continue // one process owns the SQLite file
        const backend = engine === "redis" ? await redisBackend(scenario, services!.redisTarget, services!.pgServer, services!.admin) : embeddedBackend(options)
        const result = await runScenario(scenario, options, binary, backend).finally(() => backend.close())
        const ratio = result.wrk.rps / baseline.rps
        const cpuRatio = result.cpu_us.total! / baselineCpu.total!
        violations += result.violations.length
        rows.push({ engine, scenario, ...result, ratio, cpu_ratio: cpuRatio })
        console.log(`${engine} ${scenario}: ${Math.round(result.wrk.rps)} req/s (${ratio.toFixed(2)} x hello), CPU/request ${JSON.stringify(result.cpu_us)} us (${cpuRatio.toFixed(1)} x hello), p99 ${result.wrk.p99_ms} ms, ${result.violations.length ? `VIOLATIONS: ${result.violations.join("; ")}` : "verified"}`)
      }
    }

    printTable(baseline, baselineCpu, rows)
    const dir = join(import.meta.dir, "results")
    mkdirSync(dir, { recursive: true })
    const file = join(dir, `${new Date().toISOString().replace(/[:.]/g, "-")}.json`)
    writeFileSync(file, JSON.stringify({ options, machine: { cpus: navigator.hardwareConcurrency, bun: Bun.version }, baseline, baseline_cpu_us: baselineCpu, scenarios: rows }, null, 2))
    console.log(`\nresults: ${file}`)
    if (violations > 0) {
      console.error(`\n${violations} INVARIANT VIOLATION(S): see above`)
      process.exitCode = 1
    }
  } finally {
    for (const step of cleanup.reverse()) await step().catch(() => {})
  }
}

type ScenarioResult = { wrk: WrkResult; cpu_us: Record<string, number>; violations: string[]; drain_ms: number; extra: Record<string, unknown> }

/** Where an engine keeps things, for one scenario: the server's environment, its durable rows, its backlog. */
type Backend = {
  env: Record<string, string>
  /** The service processes whose CPU counts toward each request, beside the server's. */
  services: Record<string, number[]>
  /** Rows of the durable store (portable SQL). */
  query(text: string): Promise<Record<string, any>[]>
  /** Decisions not yet in the durable store. */
  backlog(): Promise<number>
  /** Per Redis master: script calls and CPU seconds so far. */
  masters?(): Promise<{ port: number; calls: number; cpu: number }[]>
  /** Redis's own view of the sales, where there is one: units sold per sale, and the most one user holds plus bought. */
  live?(): Promise<{ sold: Map<number, number>; heldPerUser: number }>
  close(): Promise<void>
}

/** One redis-server, or a cluster of 3 masters and 3 replicas; `masters` are the nodes that decide. */
type RedisTarget = { url: string; client: RedisClient; pids: number[]; masters: { port: number; pid: number }[]; flush(): Promise<void> }

async function startRedisTarget(kind: "single" | "cluster", cleanup: (() => Promise<unknown>)[]): Promise<RedisTarget> {
  if (kind === "single") {
    const server = await startRedis()
    const client = new Redis(server.url)
    cleanup.push(() => server.stop(), async () => client.disconnect())
    const port = Number(new URL(server.url).port)
    return { url: `${server.url}/0`, client, pids: [server.pid()!], masters: [{ port, pid: server.pid()! }], flush: () => client.flushall().then(() => {}) }
  }
  const cluster = await startRedisCluster()
  const client = clusterClient(cluster.nodes[0]!.url, { enableOfflineQueue: true, maxRetriesPerRequest: 1, commandTimeout: 5000 })
  await client.connect()
  cleanup.push(() => cluster.stop(), async () => client.disconnect())
  // redis-cli --cluster create made the first three nodes the masters.
  return { url: cluster.nodes[0]!.url, client, pids: cluster.nodes.map((n) => n.pid), masters: cluster.nodes.slice(0, 3), flush: () => cluster.flush() }
}

/** Script calls each master has run so far (INFO commandstats), with its CPU seconds. */
async function masterCounters(masters: RedisTarget["masters"]): Promise<{ port: number; calls: number; cpu: number }[]> {
  return Promise.all(
    masters.map(async ({ port, pid }) => {
      const node = new Redis(port, "127.0.0.1", { maxRetriesPerRequest: 0 })
      const info = await node.info("commandstats")
      node.disconnect()
      const calls = [...info.matchAll(/^cmdstat_(?:evalsha|eval):calls=(\d+)/gm)].reduce((a, m) => a + Number(m[1]), 0)
      return { port, calls, cpu: cpuSeconds([pid]) }
    }),
  )
}

async function redisBackend(scenario: string, target: RedisTarget, pgServer: PostgresServer, admin: postgres.Sql): Promise<Backend> {
  const redis = target.client
  await target.flush()
  const db = `bench_${scenario}_${Date.now()}`
  await admin.unsafe(`create database ${db}`)
  const databaseUrl = pgServer.url.replace(/\/postgres$/, `/${db}`)
  const sql = postgres(databaseUrl, { max: 2, onnotice: () => {} })
  return {
    env: { REDIS_URL: target.url, DATABASE_URL: databaseUrl },
    services: { redis: target.pids, postgres: [pgServer.pid()!] },
    masters: () => masterCounters(target.masters),
    query: (text) => sql.unsafe(text) as Promise<Record<string, any>[]>,
    backlog: async () => (await journalBacklog(redis)).entries,
    async live() {
      const sold = new Map<number, number>()
      const perUser = new Map<string, number>()
      // The registry names every part of every sale: a whole sale, or one shard of a split one.
      for (const part of await redis.smembers(saleRegistryKey)) {
        const sale = saleOfPart(part)
        sold.set(sale, (sold.get(sale) ?? 0) + Number((await redis.hget(statsKey(part), "sold")) ?? 0))
        for (const [user, value] of Object.entries(await redis.hgetall(usersKey(part)))) perUser.set(`${sale}/${user}`, parseInt(value, 10))
      }
      return { sold, heldPerUser: Math.max(0, ...perUser.values()) }
    },
    close: () => sql.end(),
  }
}

function embeddedBackend(options: Options): Backend {
  const dir = mkdtempSync(join(tmpdir(), "bench-embedded-"))
  let db: Database | undefined
  const open = () => (db ??= new Database(join(dir, "flashsale.sqlite"), { readonly: true }))
  return {
    // Empty URLs count as unset, whatever the calling shell has.
    env: { DATA_DIR: dir, REDIS_URL: "", DATABASE_URL: "" },
    services: {},
    query: async (text) => open().query(text).all() as Record<string, any>[],
    // Every answer waits for its commit: there is never a backlog.
    backlog: async () => 0,
    async close() {
      db?.close()
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

async function runScenario(scenario: string, options: Options, binary: string, backend: Backend): Promise<ScenarioResult> {
  // Admission control as shipped (startServer turns it off for the tests' robots): the bench's shoppers are fresh users.
  const admission = Object.fromEntries(configOptions.filter((o) => o.env.startsWith("RATE_LIMIT_")).map((o) => [o.env, process.env[o.env] ?? o.default]))
  const env: Record<string, string> = { ...backend.env, ...admission, SALE_ITEMS: String(options.items), USER_LIMIT: String(options.limit), HOLD_SECONDS: "300", SALE_SHARDS: String(options.shards) }
  if (scenario === "hot") {
    const catalog = join(tmpdir(), `hot-${Date.now()}.csv`)
    writeFileSync(catalog, `id,name,image,stock,per_user\n1,The hot item,/hot.jpg,${hotUnits},1\n`)
    Object.assign(env, { CATALOG_FILE: catalog, SALE_ITEMS: "1" })
  }
  const servers: ServerProcess[] = []
  const instances = scenario === "instances" ? options.instances : 1
  // WORKERS: the supervisor's process tree is measured, workers included; every worker ready before the load.
  if (options.workers > 1 && backend.env.REDIS_URL) env.WORKERS = String(options.workers)
  for (let i = 0; i < instances; i++) servers.push(await startServer(env, [binary], tmpdir()))
  if (env.WORKERS) for (const s of servers) await until("every worker ready", () => (s.output().match(/engine redis ready/g) ?? []).length >= options.workers)
  const extra: Record<string, unknown> = {}
  const wrkEnv = { SALE_ITEMS: String(options.items) }
  let result: WrkResult
  const meter = () => cpuMeter({ server: servers.map((s) => s.proc.pid), ...backend.services })
  let cpu = meter()
  let mastersBefore = await backend.masters?.()
  try {
    if (scenario === "purchase_storm") {
      const codes = await holdAll(servers[0]!.base, options.items)
      cpu = meter()
      mastersBefore = await backend.masters?.()
      const file = join(tmpdir(), `storm-${Date.now()}.codes`)
      writeFileSync(file, codes.join("\n") + "\n")
      extra.codes = codes.length
      result = await wrk("purchase_storm.lua", servers[0]!.base, options.duration, options.connections, options.threads, { ...wrkEnv, CODES_FILE: file })
      // The holds made for the storm are checkouts too: every one was sent and answered.
      result.sent.checkout = (result.sent.checkout ?? 0) + options.items
      result.counts["checkout:setup"] = options.items
    } else if (scenario === "refusals") {
      // Every item held first, so that the flood is refusals only: the cost of the busy sale's common case.
      extra.codes = (await holdAll(servers[0]!.base, options.items)).length
      cpu = meter()
      mastersBefore = await backend.masters?.()
      result = await wrk("flood.lua", servers[0]!.base, options.duration, options.connections, options.threads, wrkEnv)
      result.sent.checkout = (result.sent.checkout ?? 0) + options.items
      result.counts["checkout:setup"] = options.items
    } else if (scenario === "soak") {
      const samples: { t: number; rss_mb: number; backlog: number; rows: number }[] = []
      const started = Date.now()
      const pid = servers[0]!.proc.pid
      const sampler = setInterval(async () => {
        const backlog = await backend.backlog()
        const rows = Number((await backend.query("select count(*) as n from checkout_attempts"))[0]!.n)
        samples.push({ t: Math.round((Date.now() - started) / 1000), rss_mb: Math.round(rssMb(pid)), backlog, rows })
      }, 1000)
      result = await wrk("flood.lua", servers[0]!.base, options.soak, options.connections, options.threads, wrkEnv)
      clearInterval(sampler)
      extra.samples = samples
      const steady = samples.filter((s) => s.t >= 10)
      extra.rss_mb = { first: samples[0]?.rss_mb, at_10s: steady[0]?.rss_mb, last: samples.at(-1)?.rss_mb, max: Math.max(...samples.map((s) => s.rss_mb)) }
      extra.backlog_max = Math.max(...samples.map((s) => s.backlog))
    } else if (scenario === "instances") {
      const per = Math.max(1, Math.floor(options.connections / servers.length))
      const threads = Math.max(1, Math.floor(options.threads / servers.length))
      result = merge(await Promise.all(servers.map((s) => wrk("flood.lua", s.base, options.duration, per, threads, wrkEnv))))
    } else {
      const script = { flood: "flood.lua", fresh: "fresh.lua", sellout: "sellout.lua", mixed: "mixed.lua", hot: "hot.lua" }[scenario]!
      result = await wrk(script, servers[0]!.base, options.duration, options.connections, options.threads, wrkEnv)
    }
    const stopped = performance.now()
    await until("the ledger backlog to drain", async () => (await backend.backlog()) === 0, 120_000)
    const drain_ms = Math.round(performance.now() - stopped)
    const cpu_us = cpu(result.requests)
    if (mastersBefore) {
      const after = await backend.masters!()
      const calls = after.map((m, i) => m.calls - mastersBefore![i]!.calls)
      const total = calls.reduce((a, n) => a + n, 0)
      extra.script_calls_per_request = Math.round((total / Math.max(1, result.requests)) * 1000) / 1000
      extra.masters = after.map((m, i) => ({
        port: m.port,
        call_share: Math.round((calls[i]! / Math.max(1, total)) * 1000) / 1000,
        cpu_us_per_request: Math.round((((m.cpu - mastersBefore![i]!.cpu) * 1e6) / Math.max(1, result.requests)) * 10) / 10,
      }))
    }
    const violations = await verify(scenario, options, result, backend, extra)
    return { wrk: result, cpu_us, violations, drain_ms, extra }
  } finally {
    for (const server of servers) await server.stop()
  }
}

/** Holds every item once (one fresh user per item) and returns the codes, for the purchase storm. */
async function holdAll(base: string, items: number): Promise<string[]> {
  const codes: string[] = []
  let next = 1
  await Promise.all(Array.from({ length: 64 }, async () => {
    while (next <= items) {
      const item = next++
      const response = await fetch(`${base}/checkout?user_id=storm${item}&id=${item}`, { method: "POST" })
      const body = (await response.json()) as { code?: string }
      if (body.code) codes.push(body.code)
    }
  }))
  return codes
}

/** Answers wrk counted under `kind:` ("checkout:ok", "checkout:sold_out", ...), by outcome; the setup's holds were all granted. */
function talliesOf(counts: Record<string, number>, kind: string): Record<string, number> {
  const out: Record<string, number> = {}
  for (const [key, n] of Object.entries(counts)) {
    if (!key.startsWith(`${kind}:`)) continue
    const outcome = key.slice(kind.length + 1) === "setup" ? "ok" : key.slice(kind.length + 1)
    out[outcome] = (out[outcome] ?? 0) + n
  }
  return out
}

async function verify(scenario: string, options: Options, result: WrkResult, backend: Backend, extra: Record<string, unknown>): Promise<string[]> {
  const one = async (text: string) => Number((await backend.query(text))[0]!.n ?? 0)
  const purchases = await one("select count(*) as n from purchases")
  const checkoutRows = await one("select count(*) as n from checkout_attempts")
  const purchaseRows = await one("select count(*) as n from purchase_attempts")
  const live = await backend.live?.()
  const decidedCheckouts = sumOf(result.counts, "checkout:")
  const decidedPurchases = sumOf(result.counts, "purchase:")
  Object.assign(extra, { purchases, checkout_rows: checkoutRows, checkouts_answered: decidedCheckouts, checkouts_sent: result.sent.checkout, purchase_rows: purchaseRows, purchases_answered: decidedPurchases, purchases_sent: result.sent.purchase })

  // The invariants every test checks (test/support/invariants.ts). wrk drops the answers still in flight when its
  // time is up, so the kept rows lie between what it saw answered and what it sent.
  const hot = scenario === "hot"
  const violations = await saleViolations(backend.query, {
    userLimit: options.limit,
    stock: hot ? () => hotUnits : undefined,
    tallies: { checkouts: talliesOf(result.counts, "checkout"), purchases: talliesOf(result.counts, "purchase") },
    attempts: { unanswered: { checkouts: (result.sent.checkout ?? 0) - decidedCheckouts, purchases: (result.sent.purchase ?? 0) - decidedPurchases } },
    liveSold: live?.sold,
    soldOut: scenario === "sellout" ? options.items : hot ? hotUnits : undefined,
  })
  if (live && live.heldPerUser > options.limit) violations.push(`a user holds plus bought ${live.heldPerUser} > USER_LIMIT ${options.limit} in Redis`)
  if (result.counts["other:503:unavailable"]) violations.push(`${result.counts["other:503:unavailable"]} answers were 503`)
  const unexpected = Object.keys(result.counts).filter((k) => k.startsWith("other:") && k !== "other:503:unavailable")
  if (unexpected.length) violations.push(`unexpected answers: ${unexpected.map((k) => `${k} x${result.counts[k]}`).join(", ")}`)

  if ((scenario === "sellout" && purchases === options.items) || (hot && purchases === hotUnits)) {
    const [last] = await backend.query("select max(purchased_at) as at from purchases")
    const [first] = await backend.query("select min(created_at) as at from checkout_attempts")
    const seconds = (new Date(last!.at).getTime() - new Date(first!.at).getTime()) / 1000
    extra.sellout_seconds = Math.round(seconds * 1000) / 1000
    extra.purchases_per_second = Math.round(purchases / seconds)
  }
  if (scenario === "purchase_storm" && purchases !== extra.codes) violations.push(`${extra.codes} valid codes but ${purchases} purchases`)
  return violations
}

function printTable(baseline: WrkResult, baselineCpu: Record<string, number>, rows: Record<string, any>[]) {
  const header = ["engine", "scenario", "req/s", "x hello", "CPU us/req (server+redis+pg)", "x hello CPU", "p50 ms", "p99 ms", "answers (ok / rejected)", "drain ms", "notes", "verified"]
  const lines = rows.map((r) => {
    const counts = r.wrk.counts as Record<string, number>
    const ok = Object.entries(counts).filter(([k]) => k.endsWith(":ok")).reduce((a, [, v]) => a + v, 0)
    const answered = Object.entries(counts).filter(([k]) => k !== "checkout:setup").reduce((a, [, v]) => a + v, 0)
    const notes: string[] = []
    if (r.extra.sellout_seconds !== undefined) notes.push(`${r.scenario === "hot" ? "10,000 units of one item" : "10,000"} sold in ${r.extra.sellout_seconds} s (${r.extra.purchases_per_second} purchases/s)`)
    if (r.extra.masters && r.extra.masters.length > 1) notes.push(`per master: calls ${r.extra.masters.map((m: any) => `${Math.round(m.call_share * 100)}%`).join("/")}, CPU us/req ${r.extra.masters.map((m: any) => m.cpu_us_per_request).join("/")}`)
    if (r.extra.script_calls_per_request !== undefined) notes.push(`${r.extra.script_calls_per_request} script calls/req`)
    if (r.extra.rss_mb) notes.push(`RSS MB first/10s/last/max ${r.extra.rss_mb.first}/${r.extra.rss_mb.at_10s}/${r.extra.rss_mb.last}/${r.extra.rss_mb.max}, backlog max ${r.extra.backlog_max}`)
    const c = r.cpu_us as Record<string, number>
    const parts = [c.server, c.redis, c.postgres].filter((v) => v !== undefined).join("+")
    return [r.engine, r.scenario, Math.round(r.wrk.rps), r.ratio.toFixed(2), `${c.total} (${parts})`, r.cpu_ratio.toFixed(1), r.wrk.p50_ms.toFixed(2), r.wrk.p99_ms.toFixed(2), `${ok} / ${answered - ok}`, r.drain_ms, notes.join("; "), r.violations.length ? "NO" : "yes"].map(String)
  })
  const all = [header, ["", "hello-world", String(Math.round(baseline.rps)), "1.00", String(baselineCpu.total), "1.0", baseline.p50_ms.toFixed(2), baseline.p99_ms.toFixed(2), "", "", "", ""], ...lines]
  const widths = header.map((_, i) => Math.max(...all.map((l) => l[i]!.length)))
  console.log("")
  for (const [i, line] of all.entries()) {
    console.log(`| ${line.map((c, j) => c.padEnd(widths[j]!)).join(" | ")} |`)
    if (i === 0) console.log(`| ${widths.map((w) => "-".repeat(w)).join(" | ")} |`)
  }
}

await main()
