/**
 * Every outcome of a decision, spelled once: the number lua/checkout.lua, lua/purchase.lua and the
 * reference rules (sale/rules.ts) return for it, and the HTTP status it is answered with. The name is
 * what the API answers as `error` and what is kept as `outcome`.
 */
export const outcomes = {
  reserved: { decision: "checkout", n: 0, status: 200 },
  repeated: { decision: "checkout", n: 1, status: 200 },
  unknown_item: { decision: "checkout", n: -1, status: 404 },
  sold_out: { decision: "checkout", n: -2, status: 409 },
  item_sold: { decision: "checkout", n: -3, status: 409 },
  item_reserved: { decision: "checkout", n: -4, status: 409 },
  user_limit: { decision: "checkout", n: -5, status: 429 },
  sale_paused: { decision: "checkout", n: -8, status: 409 },
  purchased: { decision: "purchase", n: 0, status: 200 },
  code_not_found: { decision: "purchase", n: -6, status: 404 },
  code_used: { decision: "purchase", n: -7, status: 409 },
} as const

export type Outcome = keyof typeof outcomes
type Of<D extends string> = { [K in Outcome]: (typeof outcomes)[K]["decision"] extends D ? K : never }[Outcome]
export type CheckoutOutcome = Of<"checkout">
export type PurchaseOutcome = Of<"purchase">
/** The outcomes that are refusals, answered as errors. */
export type Rejection = Exclude<Outcome, "reserved" | "repeated" | "purchased">

/** Replies of a script that decided nothing for the batch (see the Lua headers). */
export const control = { wrongSale: -10, notReady: -11 } as const

function byNumber<D extends "checkout" | "purchase">(decision: D) {
  const table = new Map<number, Of<D>>()
  for (const [name, o] of Object.entries(outcomes)) if (o.decision === decision) table.set(o.n, name as Of<D>)
  return (n: number): Of<D> => {
    const outcome = table.get(n)
    if (outcome === undefined) throw new Error(`no ${decision} outcome numbered ${n}`)
    return outcome
  }
}

export const checkoutOutcome = byNumber("checkout")
export const purchaseOutcome = byNumber("purchase")

export const isAccepted = (outcome: Outcome) => outcomes[outcome].status === 200
