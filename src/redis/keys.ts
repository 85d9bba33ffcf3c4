/** Every Redis key the server uses. All keys of one sale share the hash tag {sale:N}, so one script call touches one slot. */

/** The keys of one sale, in the order every script expects them in KEYS (see lua/prelude.lua). */
export function saleKeys(saleId: number): string[] {
  const tag = `{sale:${saleId}}`
  return [`${tag}:items`, `${tag}:codes`, `${tag}:users`, `${tag}:exp`, `${tag}:stats`, `${tag}:log`]
}

/** How many keys saleKeys() names: every script takes exactly these. */
export const saleKeyCount = 6

/** The hash whose existence marks a sale as initialised. */
export const statsKey = (saleId: number) => `{sale:${saleId}}:stats`

/** Per-user counts of purchases plus live holds. */
export const usersKey = (saleId: number) => `{sale:${saleId}}:users`

/** The sale's journal (redis/journal.ts). */
export const logKey = (saleId: number) => `{sale:${saleId}}:log`

/** Held briefly by the instance that recovers a sale's journal, so that instances do not all do the same work. */
export const drainLockKey = (saleId: number) => `{sale:${saleId}}:drain`

/** Set of sale ids whose journal the ledger recovers. */
export const saleRegistryKey = "flashsale:sales"
