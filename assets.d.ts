// Assets embedded into the binary: Lua scripts as text, the docs UI bundle as a file path.
declare module "*.lua" {
  const text: string
  export default text
}
declare module "*/standalone.js" {
  const path: string
  export default path
}
