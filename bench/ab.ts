/**
 * `bun bench/ab.ts --a <binary> --b <binary> [--scenario refusals|flood] [--rounds 8] [--seconds 3]`: compares the
 * CPU per request of two builds of the Redis engine, interleaved. Each build gets its own throwaway Redis and
 * PostgreSQL; then short wrk bursts alternate between them (A B, B A, ...), and each build's CPU (server + Redis
 * + PostgreSQL, from /proc) is summed over its own bursts only. On a shared machine whose speed drifts by tens
 * of percent from one minute to the next, a difference of a few percent shows only this way: both builds see
 * the same drift. Prints each build's µs per request and the median of the per-round ratios B / A.
 */
import { mkdtempSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import { startPostgres, startRedis } from "../test/support/services"
import { startServer, type ServerProcess } from "../test/support/process"
import { cpuSeconds } from "./cpu"

const args = Object.fromEntries(Bun.argv.slice(2).join(" ").split("--").filter(Boolean).map((a) => a.trim().split(/[ =]/) as [string, string]))
if (!args.a || !args.b) {
  console.error("usage: bun bench/ab.ts --a <binary> --b <binary> [--scenario refusals|flood] [--rounds 8] [--seconds 3]")
  process.exit(2)
}
const scenario = args.scenario ?? "refusals"
const rounds = Number(args.rounds ?? 8)
const seconds = Number(args.seconds ?? 3)
const items = 10_000

type Side = { name: string; server: ServerProcess; pids: number[]; cpu: number; requests: number; parts: Record<string, number>; trees: Record<string, number[]> }
const stops: (() => Promise<unknown>)[] = []

async function side(name: string, binary: string): Promise<Side> {
  const [redis, pg] = await Promise.all([startRedis(), startPostgres()])
  stops.push(() => redis.stop(), () => pg.stop())
  // Admission control as shipped, as bench/run.ts runs it.
  const server = await startServer({ REDIS_URL: `${redis.url}/0`, DATABASE_URL: pg.url, SALE_ITEMS: String(items), USER_LIMIT: "10", HOLD_SECONDS: "300", RATE_LIMIT_PER_USER: "20" }, [resolve(binary)], mkdtempSync(join(tmpdir(), "ab-")))
  stops.push(() => server.stop("SIGTERM"))
  const trees = { server: [server.proc.pid], redis: [redis.pid()!], postgres: [pg.pid()!] }
  return { name, server, pids: Object.values(trees).flat(), cpu: 0, requests: 0, parts: { server: 0, redis: 0, postgres: 0 }, trees }
}

/** Every item held first: the flood is then refusals only. */
async function holdAll(base: string): Promise<void> {
  let next = 1
  await Promise.all(Array.from({ length: 32 }, async () => {
    while (next <= items) {
      const id = next++
      await fetch(`${base}/checkout?user_id=holder${id}&id=${id}`, { method: "POST" }).then((r) => r.arrayBuffer())
    }
  }))
}

async function burst(s: Side): Promise<number> {
  const before = Object.fromEntries(Object.entries(s.trees).map(([k, pids]) => [k, cpuSeconds(pids)]))
  const wrk = Bun.spawn(["wrk", "-t2", "-c64", `-d${seconds}s`, "-s", join(import.meta.dir, "wrk", "flood.lua"), s.server.base], { env: { ...process.env, SALE_ITEMS: String(items) }, stdout: "pipe", stderr: "pipe" })
  const text = await new Response(wrk.stdout).text()
  await wrk.exited
  // Let the last commits land, so that their CPU counts for this burst.
  await Bun.sleep(300)
  const requests = Number(/(\d+) requests in/.exec(text)?.[1] ?? 0)
  let cpu = 0
  for (const [k, pids] of Object.entries(s.trees)) {
    const used = cpuSeconds(pids) - before[k]!
    s.parts[k]! += used
    cpu += used
  }
  s.cpu += cpu
  s.requests += requests
  return (cpu * 1e6) / Math.max(1, requests)
}

try {
  const sides = [await side("A", args.a), await side("B", args.b)]
  if (scenario === "refusals") await Promise.all(sides.map((s) => holdAll(s.server.base)))
  const ratios: number[] = []
  for (let r = 0; r < rounds; r++) {
    const order = r % 2 === 0 ? sides : [...sides].reverse()
    const us: Record<string, number> = {}
    for (const s of order) us[s.name] = await burst(s)
    ratios.push(us.B! / us.A!)
    console.log(`round ${r + 1}: A ${us.A!.toFixed(1)} µs/req, B ${us.B!.toFixed(1)} µs/req, B/A ${(us.B! / us.A!).toFixed(3)}`)
  }
  for (const s of sides) {
    const per = (k: string) => ((s.parts[k]! * 1e6) / s.requests).toFixed(1)
    console.log(`${s.name} (${s.name === "A" ? args.a : args.b}): ${((s.cpu * 1e6) / s.requests).toFixed(1)} µs/req (server ${per("server")} + redis ${per("redis")} + postgres ${per("postgres")}) over ${s.requests} requests`)
  }
  ratios.sort((x, y) => x - y)
  console.log(`B/A median of ${rounds} rounds: ${ratios[Math.floor(rounds / 2)]!.toFixed(3)} (range ${ratios[0]!.toFixed(3)}-${ratios.at(-1)!.toFixed(3)})`)
} finally {
  for (const stop of stops.reverse()) await stop().catch(() => {})
}
