/**
 * What a sending agent selects and what its content firewall stops: the shape the agent's
 * scan consumes, which the operator fills from a BackupJob's or ReplicationPair's
 * `filters` and `contentFirewall` and the CLI from its flags. Filtered data never leaves
 * the source; every file kept back is reported with its reason.
 */
import { z } from "zod";

/** A glob relative to the data root, as `path.matchesGlob` reads it (`**` crosses directories). */
export const globPattern = z.string().min(1).max(1024);

export interface FileSelection {
  /** When non-empty, only files matching one of these are selected (directories are walked). */
  include: string[];
  /** Files and directories matching one of these are left out (a directory with its contents). */
  exclude: string[];
  /** Files larger than this many bytes are left out. */
  maxFileSize?: number;
}

export interface ContentFirewall {
  enabled: boolean;
  /** Stop binaries recognised by their magic numbers (ELF, PE, Mach-O), whatever their name. */
  blockExecutables: boolean;
  /** Stop scripts: a `#!` first line, or a script extension (SCRIPT_EXTENSIONS). */
  blockScripts: boolean;
  /** Always stopped when the firewall is on. */
  blockPatterns: string[];
  /** Exempt from the firewall (checked first): files known to be safe. */
  allowPatterns: string[];
}

export interface FilterOptions extends FileSelection {
  firewall: ContentFirewall;
}

export const FIREWALL_OFF: ContentFirewall = {
  enabled: false,
  blockExecutables: true,
  blockScripts: true,
  blockPatterns: [],
  allowPatterns: [],
};

export const NO_FILTERS: FilterOptions = { include: [], exclude: [], firewall: FIREWALL_OFF };

/** Extensions the firewall treats as scripts even without a `#!` line (lower-case, with the dot). */
export const SCRIPT_EXTENSIONS = [
  ".sh",
  ".bash",
  ".zsh",
  ".ksh",
  ".csh",
  ".php",
  ".phtml",
  ".phar",
  ".py",
  ".pyc",
  ".pl",
  ".pm",
  ".cgi",
  ".rb",
  ".js",
  ".mjs",
  ".cjs",
  ".vbs",
  ".ps1",
  ".bat",
  ".cmd",
  ".jsp",
  ".asp",
  ".aspx",
];
