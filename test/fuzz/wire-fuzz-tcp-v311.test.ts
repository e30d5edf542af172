// Wire fuzz over TCP, MQTT 3.1.1 (see fuzz-suite.ts).
import { fuzzFile } from './fuzz-suite.ts';

fuzzFile('tcp', 4, 0x5eed0104);
