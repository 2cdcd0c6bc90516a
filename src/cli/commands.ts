/** The command table: every CLI command, in the order `--help` lists them. */
import type { Command } from "./command.ts";
import { checkConfig, migrateCommand, version } from "./admin.ts";
import { domainAdd, domainList, domainRemove, domainSet } from "./domain.ts";
import {
  domainHold,
  domainRelease,
  queueBounce,
  queueDelete,
  queueList,
  queueShow,
  statusCommand,
} from "./remote.ts";
import { pullCommand } from "./pull.ts";
import { serve } from "./serve.ts";
import { userAdd, userDisable, userEnable, userList, userPasswd, userRemove } from "./user.ts";

export const COMMANDS: Command[] = [
  serve,
  userAdd,
  userPasswd,
  userDisable,
  userEnable,
  userRemove,
  userList,
  domainAdd,
  domainRemove,
  domainSet,
  domainList,
  domainHold,
  domainRelease,
  statusCommand,
  queueList,
  queueShow,
  queueDelete,
  queueBounce,
  pullCommand,
  migrateCommand,
  checkConfig,
  version,
];
