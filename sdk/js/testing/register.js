// Runs a policy's code under Node, for its own tests: the contract's host
// functions (the import `edgeward:policy/host@...`) resolve to the
// stand-in in ./host.js. Use it as
//   node --import ./edgeward/testing/register.js --test
import { register } from "node:module";

register("./hooks.js", import.meta.url);
