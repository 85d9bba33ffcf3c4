/** Sale arithmetic: a sale is one period aligned to the Unix epoch. All times are Unix milliseconds. */

export const saleIdAt = (nowMs: number, periodMs: number) => Math.floor(nowMs / periodMs)

export const saleStartMs = (saleId: number, periodMs: number) => saleId * periodMs

export const saleEndMs = (saleId: number, periodMs: number) => (saleId + 1) * periodMs

/** The last moment a hold of this sale can still be purchased: a hold granted just before the end lives on. */
export const salePurchasableUntilMs = (saleId: number, periodMs: number, holdMs: number) => saleEndMs(saleId, periodMs) + holdMs

/** How long a past sale is kept live (in Redis, or in the embedded engine's memory) after its last hold could be bought. */
export const defaultRetentionMs = 24 * 3600_000

/** The retention rule: from this moment a sale is forgotten, and its codes answer code_not_found rather than code_used. */
export const saleForgottenAtMs = (saleId: number, periodMs: number, holdMs: number, retentionMs: number) => salePurchasableUntilMs(saleId, periodMs, holdMs) + retentionMs

/**
 * A formatter of Unix ms as ISO-8601 UTC that remembers its last answer: in a burst many decisions carry the
 * same millisecond, and toISOString was 3% of a request. Each use that alternates between two kinds of time
 * (decided at, expires at) takes its own.
 */
export function isoFormatter(): (ms: number) => string {
  let lastMs = Number.NaN
  let last = ""
  return (ms) => {
    if (ms !== lastMs) {
      last = new Date(ms).toISOString()
      lastMs = ms
    }
    return last
  }
}

/** Unix ms as ISO-8601 UTC. */
export const iso = isoFormatter()
