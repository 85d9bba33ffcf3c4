/**
 * Throwaway redis-server and postgres for the tests: free ports, temp data dirs,
 * stopped afterwards. As root, postgres runs as the `postgres` user (it refuses root).
 */
import { mkdtempSync, rmSync, chownSync, readdirSync, existsSync, readFileSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import Redis from "ioredis"
import postgres from "postgres"

export async function freePort(): Promise<number> {
  const server = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } })
  const port = server.port
  server.stop(true)
  return port
}

/** Polls until check() resolves truthy; fails with the last error after timeoutMs. */
export async function until<T>(what: string, check: () => Promise<T> | T, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let last: unknown
  while (Date.now() < deadline) {
    try {
      const value = await check()
      if (value) return value
    } catch (error) {
      last = error
    }
    await Bun.sleep(25)
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ""}`)
}

const isRoot = process.getuid?.() === 0

export type RedisServer = {
  url: string
  port: number
  pid(): number | undefined
  stop(): Promise<void>
  /** A shell command that stops it and removes its files: for a watchdog that outlives this process. */
  stopCommand(): string
  kill(): Promise<void>
  start(): Promise<void>
}

/** Starts redis-server on a free port; start() after kill() brings it back on the same port, empty. `requirepass`: clients must AUTH with it. */
export async function startRedis({ requirepass }: { requirepass?: string } = {}): Promise<RedisServer> {
  const port = await freePort()
  const dir = mkdtempSync(join(tmpdir(), "fs-redis-"))
  let proc: ReturnType<typeof Bun.spawn> | undefined
  const url = `redis://127.0.0.1:${port}`
  const start = async () => {
    const auth = requirepass === undefined ? [] : ["--requirepass", requirepass]
    proc = Bun.spawn(["redis-server", "--port", String(port), "--bind", "127.0.0.1", "--dir", dir, "--save", "", "--appendonly", "no", "--logfile", join(dir, "redis.log"), ...auth], { stdout: "ignore", stderr: "inherit" })
    const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, password: requirepass })
    client.on("error", () => {})
    await until(`redis-server on ${port}`, async () => {
      if (client.status !== "ready") await client.connect().catch(() => client.disconnect())
      return (await client.ping()) === "PONG"
    })
    client.disconnect()
  }
  const kill = async () => {
    proc?.kill(9)
    await proc?.exited
  }
  await start()
  return {
    url,
    port,
    pid: () => proc?.pid,
    start,
    kill,
    async stop() {
      await kill()
      rmSync(dir, { recursive: true, force: true })
    },
    stopCommand: () => `kill -9 ${proc?.pid ?? 0} 2>/dev/null; rm -rf '${dir}'`,
  }
}

export function postgresBin(): string {
  const root = "/usr/lib/postgresql"
  if (existsSync(root)) {
    const versions = readdirSync(root).filter((v) => existsSync(join(root, v, "bin", "postgres"))).sort((a, b) => Number(b) - Number(a))
    if (versions[0]) return join(root, versions[0], "bin")
  }
  const found = Bun.which("pg_ctl")
  if (found) return join(found, "..")
  throw new Error("PostgreSQL server binaries not found: install postgresql (apt-get install postgresql)")
}

export type PostgresServer = {
  url: string
  pid(): number | undefined
  stop(): Promise<void>
  /** A shell command that stops it at once and removes its files: for a watchdog that outlives this process. */
  stopCommand(): string
  halt(): Promise<void>
  start(): Promise<void>
  /** SIGSTOP / SIGCONT to the postmaster and every backend: a PostgreSQL that accepts connections and answers nothing. */
  signal(signal: "SIGSTOP" | "SIGCONT"): void
}

/** The pid and every descendant of it, from /proc. */
export function processTree(root: number): number[] {
  const children = new Map<number, number[]>()
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue
    try {
      const stat = readFileSync(`/proc/${name}/stat`, "utf8")
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1])
      children.set(ppid, [...(children.get(ppid) ?? []), Number(name)])
    } catch {}
  }
  const out = [root]
  for (let i = 0; i < out.length; i++) out.push(...(children.get(out[i]!) ?? []))
  return out
}

/**
 * initdb into a temp dir and start postgres on a free port; halt()/start() stop it and bring it back with its data.
 * With `password`, TCP connections must give it (scram-sha-256), as on a real server.
 */
export async function startPostgres({ password }: { password?: string } = {}): Promise<PostgresServer> {
  const bin = postgresBin()
  const port = await freePort()
  const dir = mkdtempSync(join(tmpdir(), "fs-pg-"))
  const data = join(dir, "data")
  const asOwner = (args: string[]) => (isRoot ? ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", ...args] : args)
  if (isRoot) chownSync(dir, uidOf("postgres"), gidOf("postgres"))
  const run = async (args: string[]) => {
    const proc = Bun.spawn(asOwner(args), { stdout: "pipe", stderr: "pipe", cwd: dir })
    const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited])
    if (code !== 0) throw new Error(`${args.slice(0, 2).join(" ")} failed (${code}): ${err || out}`)
  }
  const auth = password === undefined ? ["-A", "trust"] : ["--auth-local=trust", "--auth-host=scram-sha-256", `--pwfile=${join(dir, "pw")}`]
  if (password !== undefined) {
    writeFileSync(join(dir, "pw"), `${password}\n`)
    if (isRoot) chownSync(join(dir, "pw"), uidOf("postgres"), gidOf("postgres"))
  }
  await run([join(bin, "initdb"), "-D", data, "-U", "postgres", ...auth, "--no-sync", "-E", "UTF8"])
  const options = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off -c max_connections=200`
  const start = () => run([join(bin, "pg_ctl"), "-D", data, "-l", join(dir, "postgres.log"), "-o", options, "-w", "-t", "30", "start"])
  const halt = () => run([join(bin, "pg_ctl"), "-D", data, "-m", "immediate", "-w", "stop"])
  await start()
  const pid = () => (existsSync(join(data, "postmaster.pid")) ? Number(readFileSync(join(data, "postmaster.pid"), "utf8").split("\n")[0]) : undefined)
  return {
    url: `postgres://postgres${password === undefined ? "" : `:${encodeURIComponent(password)}`}@127.0.0.1:${port}/postgres`,
    /** The postmaster's pid, from its pid file. */
    pid,
    signal(signal) {
      for (const p of processTree(pid()!)) process.kill(p, signal)
    },
    start,
    halt,
    async stop() {
      await run([join(bin, "pg_ctl"), "-D", data, "-m", "fast", "-w", "stop"]).catch(() => {})
      rmSync(dir, { recursive: true, force: true })
    },
    stopCommand: () => `cd '${dir}' && ${asOwner([join(bin, "pg_ctl"), "-D", data, "-m", "immediate", "-w", "stop"]).map((a) => `'${a}'`).join(" ")} >/dev/null 2>&1; cd /; rm -rf '${dir}'`,
  }
}

function idOf(file: string, name: string): number {
  const line = readFileSync(file, "utf8").split("\n").find((l: string) => l.startsWith(`${name}:`))
  if (!line) throw new Error(`no ${name} in ${file}: install postgresql`)
  return Number(line.split(":")[2])
}
const uidOf = (name: string) => idOf("/etc/passwd", name)
const gidOf = (name: string) => idOf("/etc/group", name)

/** The services this run shares, set up by test/setup.ts. */
export function sharedServices(): { redisUrl: string; databaseUrl: string } {
  const redisUrl = process.env.FS_TEST_REDIS_URL
  const databaseUrl = process.env.FS_TEST_DATABASE_URL
  if (!redisUrl || !databaseUrl) throw new Error("test services are not set up: run the tests with `bun test ./test` (bunfig.toml preloads test/setup.ts)")
  return { redisUrl, databaseUrl }
}

let databases = 0
let redisDbs = 0

/** A private Redis database and a fresh PostgreSQL database, on the shared services unless others are given. */
export async function isolated(on: Partial<{ redisUrl: string; databaseUrl: string }> = {}): Promise<{ redisUrl: string; databaseUrl: string; redis: Redis; sql: postgres.Sql; close(): Promise<void> }> {
  const shared = { ...sharedServices(), ...on }
  const name = `fs_${process.pid}_${++databases}_${Date.now()}`
  const admin = postgres(shared.databaseUrl, { max: 1, onnotice: () => {} })
  await admin.unsafe(`create database ${name}`)
  await admin.end()
  const dbUrl = new URL(shared.databaseUrl)
  dbUrl.pathname = `/${name}`
  const redisUrl = `${shared.redisUrl.replace(/\/\d*$/, "")}/${++redisDbs % 16}`
  const redis = new Redis(redisUrl)
  await redis.flushdb()
  const sql = postgres(dbUrl.toString(), { max: 4, onnotice: () => {} })
  return {
    redisUrl,
    databaseUrl: dbUrl.toString(),
    redis,
    sql,
    async close() {
      await sql.end()
      redis.disconnect()
    },
  }
}


/** The `n` column of a one-row query, as a number. */
export async function scalar(rows: Promise<readonly Record<string, unknown>[]>): Promise<number> {
  return Number((await rows)[0]!.n)
}

export type RedisCluster = {
  nodes: { url: string; port: number; pid: number }[]
  flush(): Promise<void>
  /** The port of the master that owns this key's slot now. */
  masterOf(key: string): Promise<number>
  /** The ports of the masters that have a replica still running, which would take over if they died. */
  mastersWithReplica(): Promise<number[]>
  /** kill -9 of the master that owns this key's slot; resolves once its replica has taken over. */
  killMasterOf(key: string): Promise<number>
  /** Migrates this key's slot, with its keys, to another master, as `redis-cli --cluster reshard` does for each slot. */
  migrateSlotOf(key: string): Promise<void>
  stop(): Promise<void>
}

/** Three masters and three replicas on free loopback ports, created with redis-cli --cluster create; stopped and removed afterwards. */
export async function startRedisCluster(): Promise<RedisCluster> {
  const dir = mkdtempSync(join(tmpdir(), "fs-cluster-"))
  const ports: number[] = []
  while (ports.length < 6) {
    const port = await freePort()
    // The cluster bus listens on port + 10000: both must be free.
    if (port < 55535 && !ports.includes(port)) ports.push(port)
  }
  const procs = ports.map((port) =>
    Bun.spawn(["redis-server", "--port", String(port), "--bind", "127.0.0.1", "--dir", dir, "--cluster-enabled", "yes", "--cluster-config-file", `nodes-${port}.conf`, "--cluster-node-timeout", "2000", "--cluster-replica-validity-factor", "0", "--save", "", "--appendonly", "no", "--logfile", join(dir, `${port}.log`)], { stdout: "ignore", stderr: "inherit" }),
  )
  const stop = async () => {
    for (const p of procs) p.kill(9)
    await Promise.all(procs.map((p) => p.exited))
    rmSync(dir, { recursive: true, force: true })
  }
  try {
    const clients = ports.map((port) => {
      const client = new Redis(port, "127.0.0.1", { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null })
      client.on("error", () => {})
      return client
    })
    await until("cluster nodes to start", async () => {
      for (const c of clients) if (c.status !== "ready") await c.connect().catch(() => c.disconnect())
      return (await Promise.all(clients.map((c) => c.ping()))).every((r) => r === "PONG")
    })
    const create = Bun.spawn(["redis-cli", "--cluster", "create", ...ports.map((p) => `127.0.0.1:${p}`), "--cluster-replicas", "1", "--cluster-yes"], { stdout: "pipe", stderr: "pipe" })
    const [out, code] = [await new Response(create.stdout).text(), await create.exited]
    if (code !== 0) throw new Error(`redis-cli --cluster create failed: ${out}`)
    await until("the cluster to be ok on every node", async () => (await Promise.all(clients.map((c) => c.cluster("INFO")))).every((info) => /cluster_state:ok/.test(String(info))), 30_000)
    await until("every replica to be in sync", async () => {
      const roles = await Promise.all(clients.map((c) => c.info("replication")))
      return roles.filter((r) => /role:slave/.test(r)).every((r) => /master_link_status:up/.test(r)) && roles.filter((r) => /role:slave/.test(r)).length === 3
    }, 30_000)
    for (const c of clients) c.disconnect()
  } catch (error) {
    await stop()
    throw error
  }
  /** Empties every master (replicas refuse writes and follow). */
  const flush = async () => {
    for (const port of ports) {
      const client = new Redis(port, "127.0.0.1", { maxRetriesPerRequest: 0 })
      await client.flushall().catch(() => {})
      client.disconnect()
    }
  }
  const masterOf = async (key: string) => {
    const alive = ports.filter((_, i) => procs[i]!.exitCode === null && !procs[i]!.killed)
    const probe = new Redis(alive[0]!, "127.0.0.1", { maxRetriesPerRequest: 0 })
    const slot = Number(await probe.cluster("KEYSLOT", key))
    const slots = (await probe.cluster("SLOTS")) as unknown as [number, number, [string, number]][]
    probe.disconnect()
    return slots.find(([from, to]) => slot >= from && slot <= to)![2][1]
  }
  const mastersWithReplica = async () => {
    const alive = ports.filter((_, i) => procs[i]!.exitCode === null && !procs[i]!.killed)
    const probe = new Redis(alive[0]!, "127.0.0.1", { maxRetriesPerRequest: 0 })
    const nodes = String(await probe.cluster("NODES")).trim().split("\n").map((line) => line.split(" "))
    probe.disconnect()
    const up = (n: string[]) => !n[2]!.includes("fail")
    const masters = nodes.filter((n) => n[2]!.includes("master") && up(n))
    return masters.filter((m) => nodes.some((n) => n[2]!.includes("slave") && n[3] === m[0] && up(n))).map((m) => Number(m[1]!.split("@")[0]!.split(":")[1]))
  }
  const killMasterOf = async (key: string) => {
    const alive = ports.filter((_, i) => procs[i]!.exitCode === null && !procs[i]!.killed)
    const probe = new Redis(alive[0]!, "127.0.0.1", { maxRetriesPerRequest: 0 })
    const slot = Number(await probe.cluster("KEYSLOT", key))
    const owner = ((await probe.cluster("SLOTS")) as unknown as [number, number, [string, number]][]).find(([from, to]) => slot >= from && slot <= to)![2][1]
    probe.disconnect()
    procs[ports.indexOf(owner)]!.kill(9)
    await procs[ports.indexOf(owner)]!.exited
    const survivor = new Redis(alive.find((p) => p !== owner)!, "127.0.0.1", { maxRetriesPerRequest: 0 })
    await until("a replica to take over the slot", async () => {
      const slots = (await survivor.cluster("SLOTS")) as unknown as [number, number, [string, number]][]
      const now = slots.find(([from, to]) => slot >= from && slot <= to)![2][1]
      return now !== owner && /cluster_state:ok/.test(String(await survivor.cluster("INFO")))
    }, 30_000)
    survivor.disconnect()
    return owner
  }
  const migrateSlotOf = async (key: string) => {
    const connect = (port: number) => new Redis(port, "127.0.0.1", { maxRetriesPerRequest: 0 })
    const any = connect(ports[0]!)
    const slot = Number(await any.cluster("KEYSLOT", key))
    const slots = (await any.cluster("SLOTS")) as unknown as [number, number, [string, number, string]][]
    const owner = slots.find(([from, to]) => slot >= from && slot <= to)![2]
    const target = slots.map((s) => s[2]).find((m) => m[1] !== owner[1])!
    any.disconnect()
    const [src, dst] = [connect(owner[1]), connect(target[1])]
    await dst.cluster("SETSLOT", slot, "IMPORTING", owner[2])
    await src.cluster("SETSLOT", slot, "MIGRATING", target[2])
    for (;;) {
      const keys = (await src.cluster("GETKEYSINSLOT", slot, 100)) as string[]
      if (keys.length === 0) break
      await src.call("MIGRATE", "127.0.0.1", target[1], "", 0, 5000, "KEYS", ...keys)
    }
    for (const client of [dst, src]) await client.cluster("SETSLOT", slot, "NODE", target[2])
    src.disconnect()
    dst.disconnect()
  }
  return { nodes: ports.map((port, i) => ({ port, pid: procs[i]!.pid, url: `redis://127.0.0.1:${port}` })), flush, masterOf, mastersWithReplica, killMasterOf, migrateSlotOf, stop }
}
