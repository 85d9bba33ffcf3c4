/**
 * Makes docs/live-page.png: an embedded server from source on the real clock, a few waves of shoppers
 * (a few hundred requests, not a load test), and the live page in headless chromium.
 * Run: bun docs/screenshot.ts
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { openBrowser, waitForField } from "../test/support/browser"
import { request, startServer } from "../test/support/process"

const dir = mkdtempSync(join(tmpdir(), "fs-shot-"))
const server = await startServer({ DATA_DIR: dir, REDIS_URL: "", DATABASE_URL: "", SALE_ITEMS: "400", USER_LIMIT: "2" })
const browser = await openBrowser({ width: 1000, height: 700 })
try {
  await browser.page.goto(`${server.base}/`)
  await waitForField(browser.page, "items_total", "400")
  let user = 0
  for (let wave = 0; wave < 6; wave++) {
    await Promise.all(
      Array.from({ length: 40 }, async () => {
        const shopper = `shopper${++user}`
        const held = await request(server.base, "POST", `/checkout?user_id=${shopper}&id=${1 + Math.floor(Math.random() * 400)}`)
        if (held.status === 200 && Math.random() < 0.8) await request(server.base, "POST", `/purchase?code=${held.body.code}`)
      }),
    )
    await Bun.sleep(400)
  }
  await Bun.sleep(1100) // one more tick of the feed
  await browser.page.screenshot({ path: join(import.meta.dir, "live-page.png"), fullPage: true })
  console.log("wrote docs/live-page.png")
} finally {
  await browser.close()
  await server.stop()
  rmSync(dir, { recursive: true, force: true })
}
