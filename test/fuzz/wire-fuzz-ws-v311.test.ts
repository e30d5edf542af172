// Wire fuzz over WebSocket, MQTT 3.1.1 (see fuzz-suite.ts).
import { fuzzFile } from './fuzz-suite.ts';

fuzzFile('ws', 4, 0x5eed0204);
