/**
 * `bun bench/profile.ts [--engine redis|embedded] [--scenario refusals|flood|sellout|hot] [--duration 8]`: runs the
 * server from source under `bun --cpu-prof` against a throwaway Redis and PostgreSQL (or its embedded store),
 * loads it with wrk, stops it, and prints where its CPU went: the functions with the most self time, and the
 * share of each source file. The profile itself is left in bench/results/ for Chrome's or VS Code's profiler.
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { startPostgres, startRedis } from "../test/support/services"
import { startServer } from "../test/support/process"

const args = Object.fromEntries(Bun.argv.slice(2).join(" ").split("--").filter(Boolean).map((a) => a.trim().split(/[ =]/) as [string, string]))
const engine = args.engine ?? "redis"
const scenario = args.scenario ?? "refusals"
const duration = Number(args.duration ?? 8)
const root = join(import.meta.dir, "..")
const out = join(import.meta.dir, "results")
mkdirSync(out, { recursive: true })
const profileDir = mkdtempSync(join(tmpdir(), "fs-prof-"))

const stops: (() => Promise<unknown>)[] = []
let env: Record<string, string>
if (engine === "redis") {
  const [redis, pg] = await Promise.all([startRedis(), startPostgres()])
  stops.push(() => redis.stop(), () => pg.stop())
  env = { REDIS_URL: `${redis.url}/0`, DATABASE_URL: pg.url }
} else {
  const data = mkdtempSync(join(tmpdir(), "fs-prof-data-"))
  stops.push(async () => rmSync(data, { recursive: true, force: true }))
  env = { DATA_DIR: data, REDIS_URL: "", DATABASE_URL: "" }
}
const server = await startServer({ ...env, SALE_ITEMS: "10000", RATE_LIMIT_PER_USER: "20" }, ["bun", "--cpu-prof", `--cpu-prof-dir=${profileDir}`, join(root, "src", "main.ts")])
try {
  if (scenario === "refusals") {
    // Every item held first: the flood is refusals only.
    let next = 1
    await Promise.all(Array.from({ length: 64 }, async () => {
      while (next <= 10_000) await fetch(`${server.base}/checkout?user_id=holder${next}&id=${next++}`, { method: "POST" })
    }))
  }
  const script = { refusals: "flood.lua", flood: "flood.lua", sellout: "sellout.lua", hot: "hot.lua" }[scenario] ?? "flood.lua"
  const wrk = Bun.spawn(["wrk", "-t2", "-c64", `-d${duration}s`, "-s", join(import.meta.dir, "wrk", script), server.base], { env: { ...process.env, SALE_ITEMS: "10000" }, stdout: "pipe" })
  const text = await new Response(wrk.stdout).text()
  console.log(/Requests\/sec:\s+\S+/.exec(text)?.[0] ?? text)
} finally {
  await server.stop("SIGTERM")
  for (const stop of stops) await stop()
}

type Node = { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; hitCount?: number; children?: number[] }
const file = readdirSync(profileDir).find((f) => f.endsWith(".cpuprofile"))
if (!file) throw new Error("no profile was written")
const profile = JSON.parse(readFileSync(join(profileDir, file), "utf8")) as { nodes: Node[]; samples: number[] }
const kept = join(out, `${engine}-${scenario}-${new Date().toISOString().replace(/[:.]/g, "-")}.cpuprofile`)
await Bun.write(kept, readFileSync(join(profileDir, file)))
rmSync(profileDir, { recursive: true, force: true })

const hits = new Map<number, number>()
for (const id of profile.samples) hits.set(id, (hits.get(id) ?? 0) + 1)
const total = profile.samples.length
const byFunction = new Map<string, number>()
const byFile = new Map<string, number>()
for (const node of profile.nodes) {
  const n = hits.get(node.id) ?? 0
  if (n === 0) continue
  const where = node.callFrame.url.replace(/^.*\/(node_modules\/[^/]+|src|lua)\//, "$1/") || "(native)"
  const name = `${node.callFrame.functionName || "(anonymous)"} ${where}:${node.callFrame.lineNumber + 1}`
  byFunction.set(name, (byFunction.get(name) ?? 0) + n)
  byFile.set(where, (byFile.get(where) ?? 0) + n)
}
const top = (map: Map<string, number>, n: number) => [...map].sort((a, b) => b[1] - a[1]).slice(0, n).map(([k, v]) => `${((v / total) * 100).toFixed(1).padStart(5)}%  ${k}`)
console.log(`\nself time by function (${total} samples):\n${top(byFunction, 30).join("\n")}`)
console.log(`\nself time by file:\n${top(byFile, 20).join("\n")}`)
console.log(`\nprofile: ${kept}`)
