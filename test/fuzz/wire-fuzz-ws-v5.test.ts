// Wire fuzz over WebSocket, MQTT 5.0 (see fuzz-suite.ts).
import { fuzzFile } from './fuzz-suite.ts';

fuzzFile('ws', 5, 0x5eed0205);
