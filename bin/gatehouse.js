#!/usr/bin/env node
// Entry point of the `gatehouse` command. The sources are TypeScript that Node (>= 22.18) runs
// directly by stripping types, so there is no build step between a checkout and a running gateway.
import '../src/cli/main.ts';
