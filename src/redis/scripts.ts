/** The Lua scripts, embedded in the binary and registered with ioredis defineCommand (EVALSHA, falling back to EVAL). */
import type { RedisClient } from "./connect"
import prelude from "../../lua/prelude.lua" with { type: "text" }
import checkout from "../../lua/checkout.lua" with { type: "text" }
import purchase from "../../lua/purchase.lua" with { type: "text" }
import release from "../../lua/release.lua" with { type: "text" }
import status from "../../lua/status.lua" with { type: "text" }
import initSale from "../../lua/init_sale.lua" with { type: "text" }
import shardHold from "../../lua/shard_hold.lua" with { type: "text" }
import shardSlot from "../../lua/shard_slot.lua" with { type: "text" }
import shardSettle from "../../lua/shard_settle.lua" with { type: "text" }
import shardUnslot from "../../lua/shard_unslot.lua" with { type: "text" }
import shardVerify from "../../lua/shard_verify.lua" with { type: "text" }
import { UnavailableError } from "../sale/engine"
import { saleKeyCount } from "./keys"

const bodies = { checkout, purchase, release, status, initSale, shardHold, shardSlot, shardSettle, shardUnslot, shardVerify }

export type ScriptName = keyof typeof bodies
type Args = (string | number)[]
type Reply = (string | number)[]

/** The scripts as typed functions: the sale's keys (redis/keys.ts saleKeys), then the script's arguments (see each script's header). */
export type Scripts = {
  checkout: (keys: string[], args: Args) => Promise<Reply>
  purchase: (keys: string[], args: Args) => Promise<Reply>
  status: (keys: string[], args: Args) => Promise<Reply>
  release: (keys: string[], args: Args) => Promise<number>
  initSale: (keys: string[], args: Args) => Promise<number>
  shardHold: (keys: string[], args: Args) => Promise<Reply>
  shardSlot: (keys: string[], args: Args) => Promise<Reply>
  shardSettle: (keys: string[], args: Args) => Promise<Reply>
  shardUnslot: (keys: string[], args: Args) => Promise<number>
  shardVerify: (keys: string[], args: Args) => Promise<Reply>
}

export function registerScripts(redis: RedisClient): Scripts {
  const scripts = {} as Record<ScriptName, Function>
  for (const [name, body] of Object.entries(bodies) as [ScriptName, string][]) {
    // A declared key count lets ioredis route (and auto-pipeline) each call by its first key, the sale's.
    redis.defineCommand(`fs_${name}`, { lua: `${prelude}\n${body}`, numberOfKeys: saleKeyCount })
    const command = (redis as unknown as Record<string, Function>)[`fs_${name}`]!.bind(redis)
    scripts[name] = (keys: string[], args: Args) => command(...keys, ...args)
  }
  return scripts as unknown as Scripts
}

/** Rethrows a Redis error as "cannot decide now" (503) when it is one, as itself (a bug) otherwise. */
export function unavailable(error: unknown): never {
  const message = (error as Error)?.message ?? String(error)
  if (/ERR|NOSCRIPT|WRONGTYPE/.test(message) && !/LOADING|BUSY|READONLY|MASTERDOWN|TRYAGAIN|CLUSTERDOWN/.test(message)) throw error
  throw new UnavailableError(`redis: ${message}`)
}
