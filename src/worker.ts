/**
 * A worker's side of WORKERS (src/supervisor.ts): it serves its own series on a private loopback port and tells
 * its supervisor that port once it listens; /metrics serves every worker's series, each labelled with its worker,
 * since a scrape reaches one worker the kernel picks; and it stops by itself once its supervisor is gone. The engine's gauges read state
 * every worker shares: the worker scraped reads them, once, and the others serve only their process's series.
 */
import type { WorkerRole } from "./config"
import { engineFamilies } from "./http/scrape"
import { contentType, gauge, labelWorkers, type WorkerExposition } from "./metrics"

/** Worker to supervisor: it listens, and serves its own series on this loopback port. */
export type Listening = { listening: number }
/** Supervisor to every worker: the workers listening now and the ports of their series, its own included. */
export type Peers = { peers: { worker: number; port: number }[] }

/** A worker that has not answered by then is left out of the scrape, which says so (flashsale_workers_scraped). */
const peerTimeoutMs = 1000
const orphanCheckMs = 500

export type SupervisorLink = ReturnType<typeof joinSupervisor>

/** `onOrphaned`: called once the supervisor is gone (kill -9 tells nobody), so that no orphan keeps the port. */
export function joinSupervisor(role: WorkerRole, workers: number, onOrphaned: () => void) {
  let own: number | undefined
  let peers: Peers["peers"] = []
  process.on("message", (message: Peers) => (peers = message.peers.filter((peer) => peer.port !== own)))
  // A supervisor killed with -9 tells nobody, and Bun cannot ask the kernel for a signal then (PR_SET_PDEATHSIG):
  // its workers are handed to another parent, which the poll sees.
  const watch = setInterval(() => {
    if (process.ppid === role.supervisorPid) return
    clearInterval(watch)
    onOrphaned()
  }, orphanCheckMs)
  watch.unref()
  return {
    /** Serves `ownSeries` on a private loopback port and tells the supervisor: call once the app listens. */
    listening(ownSeries: () => string): void {
      const server = Bun.serve({ hostname: "127.0.0.1", port: 0, reusePort: false, fetch: () => new Response(ownSeries(), { headers: { "content-type": contentType } }) })
      own = server.port!
      process.send!({ listening: own } satisfies Listening)
    },
    /** This worker's series and those of the others that answer in time, each labelled with its worker, with how many it holds. */
    async gather(mine: string): Promise<string> {
      const theirs = await Promise.all(
        peers.map(({ worker, port }) =>
          fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(peerTimeoutMs) })
            .then(async (r): Promise<WorkerExposition | undefined> => (r.ok ? { worker, text: await r.text() } : undefined))
            .catch(() => undefined),
        ),
      )
      const texts = [{ worker: role.index, text: mine }, ...theirs.filter((t) => t !== undefined)]
      const out: string[] = []
      gauge(out, "flashsale_workers", "Worker processes this server runs (WORKERS).", [["", workers]])
      gauge(out, "flashsale_workers_scraped", "Workers whose series this scrape holds; fewer than flashsale_workers while one restarts or when one did not answer within 1 s.", [["", texts.length]])
      return labelWorkers(texts, (family) => engineFamilies.has(family)) + out.join("\n") + "\n"
    },
  }
}
