/** Imports every subcommand module; each registers itself with main.ts. */
export {};
import './status.js';
