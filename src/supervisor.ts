/**
 * WORKERS > 1 (Redis engine): this process serves nothing and opens neither Redis nor PostgreSQL. It starts that
 * many workers, copies of this program, that listen on one port with SO_REUSEPORT, so that the kernel spreads
 * connections over them; restarts a worker that dies; passes SIGTERM on; and tells every worker where the others
 * serve their own series, for /metrics (src/worker.ts). Redis decides every sale, so workers share nothing else.
 */
import type { Subprocess } from "bun"
import { workerEnv, type Config } from "./config"
import { version } from "./version"
import type { Listening, Peers } from "./worker"

type Worker = {
  index: number
  proc?: Subprocess
  /** Date.now() at its latest start, and how many times it has been started. */
  startedAt: number
  runs: number
  /** How soon after its latest start it may start again: 1 s, doubled each time it dies young (half of it before the first). */
  backoffMs: number
  /** The loopback port it serves its own series on, while it listens. */
  seriesPort?: number
}

/** The workers stop within their own 9.5 s bound (main.ts); this one is the 10 s a supervisor promises. */
const stopWithinMs = 9800
/** A worker that ran this long died of something else than its start: it is restarted at once. */
const settledMs = 10_000
const maxBackoffMs = 30_000

/** The command that runs this program again, with its arguments: the compiled executable, or Bun with the entry file. */
function ownCommand(): string[] {
  const args = Bun.argv.slice(2)
  // In a compiled executable argv[1] is the entry inside the binary (/$bunfs/root/...), not an argument of it.
  return Bun.isStandaloneExecutable ? [process.execPath, ...args] : [process.execPath, ...process.execArgv, Bun.argv[1]!, ...args]
}

const how = (code: number | null, signal: string | number | null) => (signal ? `was killed by ${signal}` : `exited with status ${code}`)

/** Starts `config.workers` workers on `config.port` (checked free, or picked, by the caller) and keeps them running until SIGTERM. */
export function supervise(config: Config, log: (message: string) => void): void {
  const command = ownCommand()
  const workers: Worker[] = Array.from({ length: config.workers }, (_, i) => ({ index: i + 1, startedAt: 0, runs: 0, backoffMs: 500 }))
  const shown = config.host.includes(":") ? `[${config.host}]` : config.host
  let announced = false
  let stopping = false

  function start(worker: Worker) {
    worker.startedAt = Date.now()
    worker.runs++
    worker.proc = Bun.spawn(command, {
      env: { ...process.env, ...workerEnv({ index: worker.index, supervisorPid: process.pid, port: config.port }) },
      // Inherited: a worker's lines reach the log even after its supervisor is gone.
      stdio: ["ignore", "inherit", "inherit"],
      serialization: "json",
      ipc: (message: Listening) => listening(worker, message.listening),
      onExit: (proc, code, signal) => exited(worker, proc.pid, code, signal),
    })
  }

  function listening(worker: Worker, seriesPort: number) {
    worker.seriesPort = seriesPort
    tellPeers()
    if (announced) log(`worker ${worker.index} listening again (pid ${worker.proc!.pid})`)
    else if (workers.every((w) => w.seriesPort)) {
      announced = true
      log(`flashsale ${version} listening on http://${shown}:${config.port} with ${workers.length} workers (pids ${workers.map((w) => w.proc!.pid).join(", ")})`)
    }
  }

  /** Every listening worker learns where all of them serve their series. */
  function tellPeers() {
    const peers: Peers = { peers: workers.flatMap((w) => (w.seriesPort ? [{ worker: w.index, port: w.seriesPort }] : [])) }
    for (const w of workers) {
      try {
        if (w.seriesPort) w.proc!.send(peers)
      } catch {} // it has just died: its exit, on its way, tells the others again
    }
  }

  function exited(worker: Worker, pid: number, code: number | null, signal: string | number | null) {
    worker.seriesPort = undefined
    tellPeers()
    if (stopping) return
    // A setting the server cannot run with: the worker said which, every other would meet it too, and a restart
    // would not help. One met after a restart (the catalog file changed) leaves the others serving.
    if (code === 2 && worker.runs === 1) {
      log(`worker ${worker.index} (pid ${pid}) exited with status 2, a setting the server cannot run with; stopping every worker`)
      return stop(2)
    }
    worker.backoffMs = Date.now() - worker.startedAt < settledMs ? Math.min(worker.backoffMs * 2, maxBackoffMs) : 1000
    const wait = Math.max(0, worker.startedAt + worker.backoffMs - Date.now())
    log(`worker ${worker.index} (pid ${pid}) ${how(code, signal)}; restarting it${wait > 0 ? ` in ${(wait / 1000).toFixed(1)} s` : ""}`)
    setTimeout(() => stopping || start(worker), wait)
  }

  /** SIGTERM to every worker, then `code` once all have exited; those still running after stopWithinMs are killed, and 1. */
  function stop(code: number) {
    if (stopping) return
    stopping = true
    for (const w of workers) w.proc?.kill("SIGTERM")
    setTimeout(() => {
      const left = workers.filter((w) => w.proc?.exitCode === null && w.proc.signalCode === null)
      log(`worker ${left.map((w) => `${w.index} (pid ${w.proc!.pid})`).join(", ")} had not stopped after ${stopWithinMs} ms: killed`)
      for (const w of left) w.proc!.kill("SIGKILL")
      process.exit(1)
    }, stopWithinMs)
    void Promise.all(workers.map((w) => w.proc?.exited)).then(() => {
      log("stopped")
      process.exit(code)
    })
  }

  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    process.on(signal, () => {
      if (!stopping) log(`${signal}: stopping the workers`)
      stop(0)
    })
  }
  for (const worker of workers) start(worker)
}
