/** Importing this module registers every family and variant. */
export * from './registry.js';
import './acmix.js';
export * from './acmix.js';
import './mixformer.js';
export * from './mixformer.js';
import './vit.js';
export * from './vit.js';
import './ceit.js';
export * from './ceit.js';
import './uniformer.js';
export * from './uniformer.js';
import './resnet.js';
export * from './resnet.js';
import './xvolution.js';
export * from './xvolution.js';
