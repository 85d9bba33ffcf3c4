/**
 * The embedded engine's data directory: made usable, or refused with a reason, and owned by one process.
 *
 * One process owns a data directory. Two embedded servers on one SQLite file would each sell the same
 * stock from their own memory, so the second must not start.
 *
 * The claim is a write lock that SQLite takes with fcntl() on `owner.lock` and never releases while the
 * process lives: the kernel drops it when the process ends, however it ends (kill -9 included), so no
 * stale lock ever needs cleaning by hand. The file also keeps the owner's pid, readable while locked.
 */
import { Database } from "bun:sqlite"
import { mkdirSync, statSync } from "node:fs"
import { join } from "node:path"

/** DATA_DIR cannot be used: `reason` says why, for a message that names the setting. */
export class DataDirUnusable extends Error {
  constructor(
    readonly dir: string,
    readonly reason: string,
  ) {
    super(`${dir}: ${reason}`)
  }
}

const reasons: Record<string, string> = {
  ENOTDIR: "a part of the path is a file, not a directory",
  EEXIST: "it is a file, not a directory",
  EACCES: "permission denied: it cannot be created or written by this user",
  EPERM: "permission denied: it cannot be created or written by this user",
  EROFS: "it is on a read-only file system",
  ENOSPC: "the disk is full",
  ENAMETOOLONG: "the path is too long",
  ELOOP: "the path has a symbolic link loop",
}

/** Creates `dir` if needed and checks it is a directory this process can write; throws DataDirUnusable. */
export function prepareDataDir(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true })
    if (!statSync(dir).isDirectory()) throw Object.assign(new Error("not a directory"), { code: "EEXIST" })
  } catch (error) {
    const code = (error as { code?: string }).code ?? ""
    throw new DataDirUnusable(dir, reasons[code] ?? `it cannot be used (${code || (error as Error).message})`)
  }
}

export class DataDirOwned extends Error {
  constructor(
    readonly dir: string,
    readonly pid: number | undefined,
  ) {
    super(`in use by another flashsale process${pid ? ` (pid ${pid})` : ""}: one process owns a data directory; stop that one or choose another DATA_DIR`)
  }
}

/** Held for the life of the process: a closed Database would release the claim. */
const claims: Database[] = []

/** What SQLite's refusal to open or write a file in `dir` means, as DataDirUnusable. */
export function unusableStore(dir: string, error: unknown): DataDirUnusable {
  const message = (error as Error)?.message ?? String(error)
  const reason = /readonly|read-only/i.test(message)
    ? "its files cannot be written (a read-only file system, or files owned by another user)"
    : /full/i.test(message)
      ? "the disk is full"
      : /not a database/i.test(message)
        ? "flashsale.sqlite is not a SQLite database"
        : /unable to open/i.test(message)
          ? "its files cannot be opened (is flashsale.sqlite or owner.lock a directory?)"
          : `SQLite cannot use it (${message})`
  return new DataDirUnusable(dir, reason)
}

const busy = (error: unknown) => (error as { code?: string }).code === "SQLITE_BUSY"

/** Claims `dir` for this process, or throws DataDirOwned naming the owner (DataDirUnusable if the lock file cannot be written). */
export function claimDataDir(dir: string, pid = process.pid): void {
  let db: Database
  try {
    db = new Database(join(dir, "owner.lock"), { create: true })
    db.run("pragma busy_timeout = 0")
    // Busy only while another process creates the table at the same moment: it will hold the lock, so wait for it.
    for (let tries = 0; ; tries++) {
      try {
        db.run("create table if not exists owner (pid integer not null)")
        break
      } catch (error) {
        if (!busy(error) || tries >= 40) throw error
        Bun.sleepSync(25)
      }
    }
  } catch (error) {
    if (busy(error)) throw new DataDirOwned(dir, undefined)
    throw unusableStore(dir, error)
  }
  const ownerPid = () => (db.query("select pid from owner").get() as { pid: number } | null)?.pid
  const take = () => {
    try {
      db.run("begin immediate")
      return true
    } catch (error) {
      if (busy(error)) return false
      throw error
    }
  }
  /** Refused: the named owner is alive, or a process that is starting holds the lock before it wrote its pid. */
  const refuse = () => {
    for (let tries = 0; ; tries++) {
      const owner = ownerPid()
      if (owner !== undefined && alive(owner)) return new DataDirOwned(dir, owner)
      if (tries >= 40) return new DataDirOwned(dir, undefined)
      Bun.sleepSync(25)
    }
  }
  // Record the pid in a committed write, then hold the write lock for good. A process that takes the lock in
  // between owns the directory; it has recorded its own pid by then, which is the one named.
  try {
    if (!take()) throw refuse()
    db.run("delete from owner")
    db.run("insert into owner (pid) values (?)", [pid])
    db.run("commit")
    if (!take()) throw refuse()
  } catch (error) {
    if (error instanceof DataDirOwned) throw error
    throw unusableStore(dir, error)
  }
  claims.push(db)
}

/**
 * The lock lives on a file, which someone may delete ("cleaning a stale lock"): a second process could then
 * claim a new one. Checks once a second that owner.lock is still the file this process locked, and calls
 * `lost` if not, so that the window in which two processes sell one stock is a second at most.
 */
export function watchClaim(dir: string, lost: () => void): () => void {
  const path = join(dir, "owner.lock")
  const inode = () => {
    try {
      return statSync(path).ino
    } catch {
      return undefined
    }
  }
  const mine = inode()
  const timer = setInterval(() => {
    if (inode() !== mine) lost()
  }, 1000)
  timer.unref()
  return () => clearInterval(timer)
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as { code?: string }).code === "EPERM"
  }
}
