/** The live sale page in a real browser: it shows the sale and follows purchases made over HTTP as they happen. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { engines, harness, serve, type Harness } from "./support/harness"
import { browserAvailable, fieldText, openBrowser, waitForField, type TestBrowser } from "./support/browser"

const run = browserAvailable()

for (const engine of engines) describe.skipIf(!run)(`${engine} engine`, () => {
  let h: Harness
  let server: ReturnType<typeof serve>
  let browser: TestBrowser
  beforeAll(async () => {
    h = await harness({ saleItems: 12, userLimit: 5 }, engine, { adminToken: "live-page-token-0123456789abcdef0123" })
    server = serve(h)
    browser = await openBrowser()
  })
  afterAll(async () => {
    await browser?.close()
    await server?.stop()
    await h?.close()
  })

  test("the page shows the sale, and its numbers follow checkouts and purchases made over HTTP", async () => {
    const { page } = browser
    const errors: string[] = []
    page.on("pageerror", (error) => errors.push(error.message))
    const saleId = String(Math.floor(h.clock.now / (h.config.salePeriodSeconds * 1000)))
    await page.goto(`${server.base}/`)
    await waitForField(page, "sale_id", saleId)
    expect(await fieldText(page, "name")).toBe(`Sale ${saleId}`)
    expect(await fieldText(page, "next_sale.name")).toBe(`Sale ${Number(saleId) + 1}`)
    expect(await fieldText(page, "items_total")).toBe("12")
    expect(await fieldText(page, "items_available")).toBe("12")
    expect(await fieldText(page, "health")).toBe("ok")
    expect(await fieldText(page, "engine")).toBe(engine)
    expect(await fieldText(page, "seconds_remaining")).toMatch(/^(\d+d )?(\d\d:)?\d\d:\d\d$/)

    for (let item = 1; item <= 3; item++) {
      const held = await server.checkout(`watcher-${item}`, item)
      expect(held.status).toBe(200)
      expect((await server.purchase(held.body.code)).status).toBe(200)
    }
    expect((await server.checkout("watcher-9", 9)).status).toBe(200)
    expect((await server.checkout("late", 1)).body.error).toBe("item_sold")

    await waitForField(page, "items_sold", "3")
    await waitForField(page, "items_reserved", "1")
    await waitForField(page, "items_available", "8")
    await waitForField(page, "checkouts.accepted", "4")
    await waitForField(page, "purchases.accepted", "3")
    // The share of each outcome: 4 reserved, 3 purchased, 1 item_sold among this server's last answers.
    await waitForField(page, "outcomes.item_sold", "12.5%")
    // The rates are per second between two samples; one of them saw these 9 decisions arrive.
    await waitForField(page, "checkouts_per_second", /^[1-9]/)
    if (process.env.LIVE_SCREENSHOT) await page.screenshot({ path: process.env.LIVE_SCREENSHOT, fullPage: true })
    expect(errors).toEqual([])
  })

  test("an operator's pause shows within two seconds, with the action, and so does the resume", async () => {
    const { page } = browser
    const saleId = Math.floor(h.clock.now / (h.config.salePeriodSeconds * 1000))
    await page.goto(`${server.base}/`)
    await waitForField(page, "sale_status", "active")
    const paused = await h.admin("POST", `/admin/sales/${saleId}/pause`)
    expect([paused.status, paused.body]).toEqual([200, expect.anything()])
    await waitForField(page, "sale_status", "paused", 2000)
    await waitForField(page, "action", "pause sale", 2000)
    expect((await h.admin("POST", `/admin/sales/${saleId}/resume`)).status).toBe(200)
    await waitForField(page, "sale_status", "active", 2000)
  })

  test("on a phone's screen nothing is wider than the screen", async () => {
    await browser.page.setViewportSize({ width: 375, height: 740 })
    await browser.page.reload()
    await waitForField(browser.page, "items_sold", "3")
    const overflow = await browser.page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    expect(overflow).toBeLessThanOrEqual(0)
  })
})
