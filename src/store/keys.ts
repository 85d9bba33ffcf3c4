/** Every Redis key the server uses. All keys of one sale share the hash tag {sale:N}, so its scripts run on Redis Cluster. */

/** The keys of one sale, in the order every script expects them in KEYS (see lua/sweep.lua). */
export function saleKeys(saleId: number): string[] {
  const tag = `{sale:${saleId}}`
  return [`${tag}:items`, `${tag}:codes`, `${tag}:users`, `${tag}:exp`, `${tag}:stats`, `${tag}:log`]
}

/** The hash whose existence marks a sale as initialised. */
export const statsKey = (saleId: number) => `{sale:${saleId}}:stats`

export const logKey = (saleId: number) => `{sale:${saleId}}:log`

/** Set of sale ids whose log stream the ledger writer drains. */
export const salesRegistryKey = "flashsale:sales"

export const ledgerGroup = "ledger"
