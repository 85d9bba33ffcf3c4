/**
 * `bun bench/shelf.ts [--binary path] [--instances 10] [--items 100000] [--seconds 10]`: what keeping the
 * storefront's snapshot (GET /items) fresh costs Redis. Ten instances of the Redis engine serve one planned sale
 * of 100,000 items while every instance's /items is read ten times a second; Redis's CPU per second is measured
 * (utime + stime from /proc) with nobody reading, with readers and a sale that never changes, and with readers
 * while checkouts change it all the time. Readers' requests never reach Redis: they are counted beside it.
 */
import { join, resolve } from "node:path"
import { existsSync } from "node:fs"
import { startPostgres, startRedis, until } from "../test/support/services"
import { startServer, type ServerProcess } from "../test/support/process"
import { cpuSeconds } from "./cpu"

const args = Object.fromEntries(Bun.argv.slice(2).join(" ").split("--").filter(Boolean).map((a) => a.trim().split(/[ =]/) as [string, string]))
const instances = Number(args.instances ?? 10)
const items = Number(args.items ?? 100_000)
const seconds = Number(args.seconds ?? 10)
const root = join(import.meta.dir, "..")
let binary = args.binary ? resolve(args.binary) : join(root, "dist", "flashsale")
if (!args.binary) {
  const build = Bun.spawnSync(["bun", "run", "build"], { cwd: root, stdout: "ignore", stderr: "pipe" })
  if (build.exitCode !== 0) throw new Error(`build failed: ${build.stderr.toString()}`)
}
if (!existsSync(binary)) throw new Error(`no binary at ${binary}`)

const token = crypto.randomUUID().replace(/-/g, "")
const [redis, pg] = await Promise.all([startRedis(), startPostgres()])
const servers: ServerProcess[] = []
try {
  const env = { REDIS_URL: `${redis.url}/0`, DATABASE_URL: pg.url, SALE_SCHEDULE: "planned", ADMIN_TOKEN: token, RATE_LIMIT_PER_USER: "0", USER_LIMIT: "1000000" }
  for (let i = 0; i < instances; i++) servers.push(await startServer(env, [binary]))
  const list = Array.from({ length: items }, (_, i) => ({ id: i + 1, name: `Item ${i + 1}`, image: `/items/${i + 1}.jpg`, price: 10, stock: 10 }))
  const created = await fetch(`${servers[0]!.base}/admin/sales`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify({ name: "Big", starts_at: new Date(Date.now() - 1000).toISOString(), ends_at: new Date(Date.now() + 3_600_000).toISOString(), items: list }),
  })
  if (created.status !== 201) throw new Error(`creating the sale: ${created.status} ${await created.text()}`)
  for (const s of servers) await until("every instance to serve the sale's items", async () => ((await (await fetch(`${s.base}/items?limit=1`)).json()) as { total: number }).total === items, 30_000)

  const redisPid = redis.pid()!
  async function measure(name: string, readers: boolean, checkoutsPerSecond: number) {
    let reads = 0
    let checkouts = 0
    let running = true
    const loops: Promise<void>[] = []
    if (readers) {
      for (const s of servers) {
        loops.push((async () => {
          while (running) {
            await fetch(`${s.base}/items?offset=${Math.floor(Math.random() * items)}&limit=100`).then((r) => r.arrayBuffer())
            reads++
            await Bun.sleep(100)
          }
        })())
      }
    }
    if (checkoutsPerSecond > 0) {
      loops.push((async () => {
        while (running) {
          const started = Date.now()
          await Promise.all(Array.from({ length: checkoutsPerSecond / 10 }, (_, i) => fetch(`${servers[i % servers.length]!.base}/checkout?user_id=u${checkouts + i}&id=${1 + Math.floor(Math.random() * items)}`, { method: "POST" }).then((r) => r.arrayBuffer())))
          checkouts += checkoutsPerSecond / 10
          await Bun.sleep(Math.max(0, 100 - (Date.now() - started)))
        }
      })())
    }
    // Let the snapshots settle into the phase, then measure.
    await Bun.sleep(2000)
    const [cpu0, reads0, checkouts0, t0] = [cpuSeconds([redisPid]), reads, checkouts, performance.now()]
    await Bun.sleep(seconds * 1000)
    const [cpu1, reads1, checkouts1, t1] = [cpuSeconds([redisPid]), reads, checkouts, performance.now()]
    running = false
    await Promise.all(loops)
    const elapsed = (t1 - t0) / 1000
    return { phase: name, redis_cpu_ms_per_second: Math.round(((cpu1 - cpu0) * 1000 * 10) / elapsed) / 10, items_reads_per_second: Math.round((reads1 - reads0) / elapsed), checkouts_per_second: Math.round((checkouts1 - checkouts0) / elapsed) }
  }

  const rows = [
    await measure("nobody reads /items", false, 0),
    await measure("/items read, nothing changes", true, 0),
    await measure("/items read, 200 checkouts/s change it", true, 200),
    await measure("200 checkouts/s, nobody reads /items", false, 200),
  ]
  console.log(`\n${instances} instances, one planned sale of ${items.toLocaleString("en")} items, ${seconds} s per phase; Redis CPU in ms per second (1000 = one core):\n`)
  console.log("| phase | Redis CPU ms/s | /items reads/s | checkouts/s |\n| --- | --- | --- | --- |")
  for (const r of rows) console.log(`| ${r.phase} | ${r.redis_cpu_ms_per_second} | ${r.items_reads_per_second} | ${r.checkouts_per_second} |`)
} finally {
  for (const s of servers) await s.stop("SIGKILL")
  await Promise.allSettled([redis.stop(), pg.stop()])
}
