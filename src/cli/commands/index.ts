import type { Command } from '../command.ts';
import { checkApi } from './check.ts';
import { completionCommand } from './completion.ts';
import { inspectSecret } from './inspect.ts';
import { renew, resume, revoke, suspend } from './lifecycle.ts';
import { list } from './list.ts';
import { request } from './request.ts';
import { revokeUser } from './revoke-user.ts';
import { status } from './status.ts';
import { token } from './token.ts';
import { version } from './version.ts';
import { whoami } from './whoami.ts';

/** Every command, in the order `--help` lists them. */
export const COMMANDS: Command[] = [whoami, request, token, status, list, renew, revoke, suspend, resume, revokeUser, inspectSecret, checkApi, version];
COMMANDS.push(completionCommand(() => COMMANDS));
