/**
 * `user add|passwd|disable|enable|remove|list`: ODMR customer accounts.
 * A secret is stored twice, never in plaintext: as Dovecot-style CRAM-MD5 contexts (RFC 2195;
 * fetchmail only speaks CRAM-MD5) and as an scrypt hash for PLAIN/LOGIN under TLS.
 */
import { cramMd5Secret } from "../server/sasl/cram_md5.ts";
import { generateSecret, hashPassword } from "../server/sasl/password.ts";
import {
  type CliIo,
  type Command,
  noExtraPositionals,
  type ParsedArgs,
  positional,
  table,
  UsageError,
} from "./command.ts";
import { DATA_OPTIONS, withStore } from "./config_args.ts";

const SECRET_OPTIONS = {
  ...DATA_OPTIONS,
  generate: { type: "boolean" as const },
  "password-stdin": { type: "boolean" as const },
};

/** Reads the new secret as the flags say; returns it and whether to print it. */
async function newSecret(
  args: ParsedArgs,
  io: CliIo,
  command: string,
): Promise<{ secret: string; show: boolean }> {
  const generate = args.values.generate === true;
  const fromStdin = args.values["password-stdin"] === true;
  if (generate === fromStdin) {
    throw new UsageError(`${command}: give exactly one of --generate or --password-stdin`);
  }
  if (generate) return { secret: generateSecret(), show: true };
  const secret = (await io.readStdin()).replace(/\r?\n$/, "");
  if (secret.length < 8) {
    throw new UsageError(`${command}: the password from stdin must be at least 8 characters`);
  }
  if (/[\r\n\0]/.test(secret)) throw new UsageError(`${command}: the password must be one line without NUL`);
  return { secret, show: false };
}

async function derive(secret: string) {
  return { cramMd5Secret: cramMd5Secret(secret), passwordHash: await hashPassword(secret) };
}

export const userAdd: Command = {
  name: "user add",
  summary: "Create an ODMR account (prints a generated secret once with --generate)",
  usage: "user add NAME (--generate | --password-stdin) [--data-dir DIR | --database URL]",
  options: SECRET_OPTIONS,
  async run(args, io) {
    const name = positional(args, 0, "NAME", this.name);
    noExtraPositionals(args, 1, this.name);
    const { secret, show } = await newSecret(args, io, this.name);
    await withStore(args, io, async (store) => {
      await store.addAccount(name, await derive(secret));
    });
    io.out(show ? `account ${name} created; secret (shown once): ${secret}` : `account ${name} created`);
    return 0;
  },
};

export const userPasswd: Command = {
  name: "user passwd",
  summary: "Set a new secret for an account",
  usage: "user passwd NAME (--generate | --password-stdin) [--data-dir DIR | --database URL]",
  options: SECRET_OPTIONS,
  async run(args, io) {
    const name = positional(args, 0, "NAME", this.name);
    noExtraPositionals(args, 1, this.name);
    const { secret, show } = await newSecret(args, io, this.name);
    await withStore(args, io, async (store) => {
      await store.setAccountSecrets(name, await derive(secret));
    });
    io.out(
      show ? `secret for ${name} changed; new secret (shown once): ${secret}` : `secret for ${name} changed`,
    );
    return 0;
  },
};

function toggle(disabled: boolean): Command {
  const verb = disabled ? "disable" : "enable";
  return {
    name: `user ${verb}`,
    summary: disabled ? "Refuse AUTH for an account (its mail stays queued)" : "Allow AUTH again",
    usage: `user ${verb} NAME [--data-dir DIR | --database URL]`,
    options: DATA_OPTIONS,
    async run(args, io) {
      const name = positional(args, 0, "NAME", this.name);
      noExtraPositionals(args, 1, this.name);
      await withStore(args, io, async (store) => {
        await store.setAccountDisabled(name, disabled);
      });
      io.out(`account ${name} ${verb}d`);
      return 0;
    },
  };
}
export const userDisable = toggle(true);
export const userEnable = toggle(false);

export const userRemove: Command = {
  name: "user remove",
  summary: "Delete an account that owns no domains",
  usage: "user remove NAME [--data-dir DIR | --database URL]",
  options: DATA_OPTIONS,
  async run(args, io) {
    const name = positional(args, 0, "NAME", this.name);
    noExtraPositionals(args, 1, this.name);
    await withStore(args, io, async (store) => {
      await store.removeAccount(name);
    });
    io.out(`account ${name} removed`);
    return 0;
  },
};

export const userList: Command = {
  name: "user list",
  summary: "List accounts",
  usage: "user list [--json] [--data-dir DIR | --database URL]",
  options: { ...DATA_OPTIONS, json: { type: "boolean" } },
  async run(args, io) {
    noExtraPositionals(args, 0, this.name);
    await withStore(args, io, async (store) => {
      const rows = await store.listAccounts();
      if (args.values.json) {
        io.out(JSON.stringify(rows.map(({ cramMd5Secret: _c, passwordHash: _p, ...r }) => r), null, 2));
      } else {
        io.out(table(
          ["USER", "DOMAINS", "STATE", "CREATED"],
          rows.map((
            r,
          ) => [
            r.username,
            r.domains,
            r.disabled ? "disabled" : "enabled",
            new Date(r.createdAt).toISOString(),
          ]),
        ));
      }
    });
    return 0;
  },
};
