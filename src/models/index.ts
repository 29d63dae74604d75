/** Importing this module registers every family and variant. */
export * from './registry.js';
