// The baseline server: a plain Bun.serve hello-world, measured with the same wrk settings as every scenario.
const server = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: () => new Response("Hello, world!") })
console.log(`listening on http://127.0.0.1:${server.port}`)
