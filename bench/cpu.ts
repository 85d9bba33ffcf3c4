/**
 * CPU time of process trees from /proc: utime + stime of each process and of its live descendants,
 * plus what its reaped children used (cutime + cstime), so PostgreSQL backends that come and go count.
 * On a shared machine CPU per request is far steadier than requests per second.
 */
import { readdirSync, readFileSync } from "node:fs"

const ticksPerSecond = 100

type Stat = { pid: number; ppid: number; self: number; children: number }

function readStat(pid: number): Stat | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, "utf8")
    // The command name may hold spaces and parentheses: fields are counted from the last ')'.
    const fields = text.slice(text.lastIndexOf(")") + 2).split(" ")
    const n = (i: number) => Number(fields[i - 3])
    return { pid, ppid: n(4), self: n(14) + n(15), children: n(16) + n(17) }
  } catch {
    return undefined
  }
}

function allStats(): Stat[] {
  const stats: Stat[] = []
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue
    const stat = readStat(Number(name))
    if (stat) stats.push(stat)
  }
  return stats
}

/** Seconds of CPU the trees rooted at these pids have used so far. */
export function cpuSeconds(roots: number[]): number {
  const stats = allStats()
  const byParent = new Map<number, Stat[]>()
  for (const s of stats) byParent.set(s.ppid, [...(byParent.get(s.ppid) ?? []), s])
  let ticks = 0
  const visit = (s: Stat) => {
    ticks += s.self + s.children
    for (const child of byParent.get(s.pid) ?? []) visit(child)
  }
  for (const root of roots) {
    const stat = stats.find((s) => s.pid === root)
    if (stat) visit(stat)
  }
  return ticks / ticksPerSecond
}

/** Starts counting; the returned function gives microseconds of CPU per request for each named tree since then. */
export function cpuMeter(trees: Record<string, number[]>): (requests: number) => Record<string, number> {
  const before = Object.fromEntries(Object.entries(trees).map(([name, pids]) => [name, cpuSeconds(pids)]))
  return (requests) => {
    const out: Record<string, number> = {}
    let total = 0
    for (const [name, pids] of Object.entries(trees)) {
      const us = ((cpuSeconds(pids) - before[name]!) * 1e6) / Math.max(1, requests)
      out[name] = Math.round(us * 10) / 10
      total += us
    }
    out.total = Math.round(total * 10) / 10
    return out
  }
}
