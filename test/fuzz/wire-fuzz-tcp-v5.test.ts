// Wire fuzz over TCP, MQTT 5.0 (see fuzz-suite.ts).
import { fuzzFile } from './fuzz-suite.ts';

fuzzFile('tcp', 5, 0x5eed0105);
