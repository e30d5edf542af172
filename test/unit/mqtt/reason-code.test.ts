// Reason-code catalogue (MQTT 5.0 §2.4, Table 2-6): every code has a name and the packets that may
// carry it; the per-packet subset types agree with the table; the 3.1.1 CONNACK downgrade.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  type ConnackReasonCode, isFailure, type PubAckReasonCode, type PubRelReasonCode, ReasonCode, reasonCodeInfo,
  reasonCodeName, type ReasonPacket, type SubAckReasonCode, toV3ConnackReturnCode, type UnsubAckReasonCode,
  V3ConnackReturnCode,
} from '../../../src/mqtt/reason-code.ts';

const allCodes = Object.values(ReasonCode).filter((v): v is ReasonCode => typeof v === 'number');
const allPackets: readonly ReasonPacket[] = ['connack', 'puback', 'pubrec', 'pubrel', 'pubcomp', 'suback', 'unsuback', 'disconnect', 'auth'];

// Each subset type written out as a record: `satisfies Record<Union, true>` fails to compile if a
// member of the union is missing or an extra code is listed, so these lists are exactly the types.
const connackCodes = {
  [ReasonCode.Success]: true, [ReasonCode.UnspecifiedError]: true, [ReasonCode.MalformedPacket]: true,
  [ReasonCode.ProtocolError]: true, [ReasonCode.ImplementationSpecificError]: true,
  [ReasonCode.UnsupportedProtocolVersion]: true, [ReasonCode.ClientIdentifierNotValid]: true,
  [ReasonCode.BadUserNameOrPassword]: true, [ReasonCode.NotAuthorized]: true, [ReasonCode.ServerUnavailable]: true,
  [ReasonCode.ServerBusy]: true, [ReasonCode.Banned]: true, [ReasonCode.BadAuthenticationMethod]: true,
  [ReasonCode.TopicNameInvalid]: true, [ReasonCode.PacketTooLarge]: true, [ReasonCode.QuotaExceeded]: true,
  [ReasonCode.PayloadFormatInvalid]: true, [ReasonCode.RetainNotSupported]: true, [ReasonCode.QosNotSupported]: true,
  [ReasonCode.UseAnotherServer]: true, [ReasonCode.ServerMoved]: true, [ReasonCode.ConnectionRateExceeded]: true,
} satisfies Record<ConnackReasonCode, true>;
const pubAckCodes = {
  [ReasonCode.Success]: true, [ReasonCode.NoMatchingSubscribers]: true, [ReasonCode.UnspecifiedError]: true,
  [ReasonCode.ImplementationSpecificError]: true, [ReasonCode.NotAuthorized]: true, [ReasonCode.TopicNameInvalid]: true,
  [ReasonCode.PacketIdentifierInUse]: true, [ReasonCode.QuotaExceeded]: true, [ReasonCode.PayloadFormatInvalid]: true,
} satisfies Record<PubAckReasonCode, true>;
const pubRelCodes = {
  [ReasonCode.Success]: true, [ReasonCode.PacketIdentifierNotFound]: true,
} satisfies Record<PubRelReasonCode, true>;
const subAckCodes = {
  [ReasonCode.Success]: true, [ReasonCode.GrantedQos1]: true, [ReasonCode.GrantedQos2]: true,
  [ReasonCode.UnspecifiedError]: true, [ReasonCode.ImplementationSpecificError]: true, [ReasonCode.NotAuthorized]: true,
  [ReasonCode.TopicFilterInvalid]: true, [ReasonCode.PacketIdentifierInUse]: true, [ReasonCode.QuotaExceeded]: true,
  [ReasonCode.SharedSubscriptionsNotSupported]: true, [ReasonCode.SubscriptionIdentifiersNotSupported]: true,
  [ReasonCode.WildcardSubscriptionsNotSupported]: true,
} satisfies Record<SubAckReasonCode, true>;
const unsubAckCodes = {
  [ReasonCode.Success]: true, [ReasonCode.NoSubscriptionExisted]: true, [ReasonCode.UnspecifiedError]: true,
  [ReasonCode.ImplementationSpecificError]: true, [ReasonCode.NotAuthorized]: true,
  [ReasonCode.TopicFilterInvalid]: true, [ReasonCode.PacketIdentifierInUse]: true,
} satisfies Record<UnsubAckReasonCode, true>;

const codesOf = (r: object): ReasonCode[] => Object.keys(r).map(Number).sort((a, b) => a - b);
const carriedBy = (packet: ReasonPacket): ReasonCode[] =>
  allCodes.filter((rc) => reasonCodeInfo[rc].packets.includes(packet)).sort((a, b) => a - b);

describe('reason-code catalogue', () => {
  test('the enum has the 43 MQTT 5.0 codes', () => {
    assert.equal(allCodes.length, 43);
    assert.equal(new Set(allCodes).size, allCodes.length, 'no duplicate values');
  });

  for (const rc of allCodes) {
    test(`0x${rc.toString(16).padStart(2, '0')} ${ReasonCode[rc]} has a name and at least one packet`, () => {
      const info = reasonCodeInfo[rc];
      assert.ok(info, 'listed in reasonCodeInfo');
      assert.ok(info.name.trim().length > 0, 'non-empty name');
      assert.equal(reasonCodeName(rc), info.name);
      assert.ok(info.packets.length > 0, 'carried by at least one packet');
      for (const p of info.packets) assert.ok(allPackets.includes(p), `known packet ${p}`);
      assert.equal(new Set(info.packets).size, info.packets.length, 'no packet listed twice');
    });
  }

  test('the catalogue has no entries beyond the enum, and names are unique', () => {
    assert.deepEqual(Object.keys(reasonCodeInfo).map(Number).sort((a, b) => a - b), [...allCodes].sort((a, b) => a - b));
    const names = allCodes.map((rc) => reasonCodeInfo[rc].name);
    assert.equal(new Set(names).size, names.length);
  });

  test('every packet kind that carries a reason code carries Success', () => {
    for (const p of allPackets) assert.ok(reasonCodeInfo[ReasonCode.Success].packets.includes(p), p);
  });

  test('per-packet subset types match the table (spec §2.4 Table 2-6)', () => {
    assert.deepEqual(carriedBy('connack'), codesOf(connackCodes));
    assert.deepEqual(carriedBy('puback'), codesOf(pubAckCodes));
    assert.deepEqual(carriedBy('pubrec'), codesOf(pubAckCodes));
    assert.deepEqual(carriedBy('pubrel'), codesOf(pubRelCodes));
    assert.deepEqual(carriedBy('pubcomp'), codesOf(pubRelCodes));
    assert.deepEqual(carriedBy('suback'), codesOf(subAckCodes));
    assert.deepEqual(carriedBy('unsuback'), codesOf(unsubAckCodes));
  });

  test('spot checks against the spec table', () => {
    assert.deepEqual(carriedBy('auth'), [ReasonCode.Success, ReasonCode.ContinueAuthentication, ReasonCode.ReAuthenticate]);
    assert.deepEqual([...reasonCodeInfo[ReasonCode.DisconnectWithWillMessage].packets], ['disconnect']);
    assert.deepEqual([...reasonCodeInfo[ReasonCode.SessionTakenOver].packets], ['disconnect']);
    assert.equal(reasonCodeInfo[ReasonCode.NotAuthorized].name, 'Not authorized');
  });

  test('reasonCodeName falls back to hex for unknown codes', () => {
    assert.equal(reasonCodeName(0x03), '0x3');
    assert.equal(reasonCodeName(0xff), '0xff');
  });

  test('isFailure is true exactly for codes ≥ 0x80', () => {
    for (const rc of allCodes) assert.equal(isFailure(rc), rc >= 0x80, ReasonCode[rc]);
  });
});

describe('toV3ConnackReturnCode', () => {
  // Every CONNACK code; the record type makes the table complete.
  const expected = {
    [ReasonCode.Success]: V3ConnackReturnCode.Accepted,
    [ReasonCode.UnsupportedProtocolVersion]: V3ConnackReturnCode.UnacceptableProtocolVersion,
    [ReasonCode.ClientIdentifierNotValid]: V3ConnackReturnCode.IdentifierRejected,
    [ReasonCode.BadUserNameOrPassword]: V3ConnackReturnCode.BadUserNameOrPassword,
    [ReasonCode.BadAuthenticationMethod]: V3ConnackReturnCode.BadUserNameOrPassword,
    [ReasonCode.NotAuthorized]: V3ConnackReturnCode.NotAuthorized,
    [ReasonCode.Banned]: V3ConnackReturnCode.NotAuthorized,
    [ReasonCode.ServerUnavailable]: V3ConnackReturnCode.ServerUnavailable,
    [ReasonCode.ServerBusy]: V3ConnackReturnCode.ServerUnavailable,
    [ReasonCode.UnspecifiedError]: V3ConnackReturnCode.ServerUnavailable,
    [ReasonCode.MalformedPacket]: V3ConnackReturnCode.ServerUnavailable,
    [ReasonCode.ProtocolError]: V3ConnackReturnCode.ServerUnavailable,
    [ReasonCode.ImplementationSpecificError]: V3ConnackReturnCode.ServerUnavailable,
    [ReasonCode.TopicNameInvalid]: V3ConnackReturnCode.ServerUnavailable,
    [ReasonCode.PacketTooLarge]: V3ConnackReturnCode.ServerUnavailable,
    [ReasonCode.QuotaExceeded]: V3ConnackReturnCode.ServerUnavailable,
    [ReasonCode.PayloadFormatInvalid]: V3ConnackReturnCode.ServerUnavailable,
    [ReasonCode.RetainNotSupported]: V3ConnackReturnCode.ServerUnavailable,
    [ReasonCode.QosNotSupported]: V3ConnackReturnCode.ServerUnavailable,
    [ReasonCode.UseAnotherServer]: V3ConnackReturnCode.ServerUnavailable,
    [ReasonCode.ServerMoved]: V3ConnackReturnCode.ServerUnavailable,
    [ReasonCode.ConnectionRateExceeded]: V3ConnackReturnCode.ServerUnavailable,
  } satisfies Record<ConnackReasonCode, V3ConnackReturnCode>;

  for (const [rc, v3] of Object.entries(expected) as unknown as Array<[string, V3ConnackReturnCode]>) {
    const code = Number(rc) as ConnackReasonCode;
    test(`${ReasonCode[code]} → ${V3ConnackReturnCode[v3]}`, () => {
      assert.equal(toV3ConnackReturnCode(code), v3);
    });
  }

  test('only Success maps to Accepted, and every result is a 3.1.1 return code (0–5)', () => {
    for (const rc of codesOf(connackCodes) as ConnackReasonCode[]) {
      const v3 = toV3ConnackReturnCode(rc);
      assert.ok(v3 >= 0 && v3 <= 5, ReasonCode[rc]);
      assert.equal(v3 === V3ConnackReturnCode.Accepted, rc === ReasonCode.Success, ReasonCode[rc]);
    }
  });
});
