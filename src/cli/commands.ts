/** Imports every subcommand module; each registers itself with main.ts. */
export {};
import './replay.js';
import './status.js';
import './demo.js';
import './run.js';
import './keys.js';
import './rekey.js';
import './import-libvirt.js';
import './attach.js';
import './hook.js';
