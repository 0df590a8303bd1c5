// require() of the package: it is an ES module with top-level await, so require() cannot load
// it; it must fail at once with a message that says how to load it instead.
const assert = require("node:assert/strict");

assert.throws(
  () => require("gossip-wasm"),
  (e) => {
    assert.match(e.message, /ES module/);
    assert.match(e.message, /import\("gossip-wasm"\)/);
    return true;
  },
);
console.log("require.test.cjs: require() fails with a message naming import()");
