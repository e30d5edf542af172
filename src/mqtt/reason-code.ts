// MQTT reason codes. Values are MQTT 5.0's (spec §2.4) and used internally for both protocol
// versions; toV3ConnackReturnCode maps to 3.1.1 where the wire needs it.

/** Every MQTT 5.0 reason code. */
export enum ReasonCode {
  Success = 0x00,
  GrantedQos1 = 0x01,
  GrantedQos2 = 0x02,
  DisconnectWithWillMessage = 0x04,
  NoMatchingSubscribers = 0x10,
  NoSubscriptionExisted = 0x11,
  ContinueAuthentication = 0x18,
  ReAuthenticate = 0x19,
  UnspecifiedError = 0x80,
  MalformedPacket = 0x81,
  ProtocolError = 0x82,
  ImplementationSpecificError = 0x83,
  UnsupportedProtocolVersion = 0x84,
  ClientIdentifierNotValid = 0x85,
  BadUserNameOrPassword = 0x86,
  NotAuthorized = 0x87,
  ServerUnavailable = 0x88,
  ServerBusy = 0x89,
  Banned = 0x8a,
  ServerShuttingDown = 0x8b,
  BadAuthenticationMethod = 0x8c,
  KeepAliveTimeout = 0x8d,
  SessionTakenOver = 0x8e,
  TopicFilterInvalid = 0x8f,
  TopicNameInvalid = 0x90,
  PacketIdentifierInUse = 0x91,
  PacketIdentifierNotFound = 0x92,
  ReceiveMaximumExceeded = 0x93,
  TopicAliasInvalid = 0x94,
  PacketTooLarge = 0x95,
  MessageRateTooHigh = 0x96,
  QuotaExceeded = 0x97,
  AdministrativeAction = 0x98,
  PayloadFormatInvalid = 0x99,
  RetainNotSupported = 0x9a,
  QosNotSupported = 0x9b,
  UseAnotherServer = 0x9c,
  ServerMoved = 0x9d,
  SharedSubscriptionsNotSupported = 0x9e,
  ConnectionRateExceeded = 0x9f,
  MaximumConnectTime = 0xa0,
  SubscriptionIdentifiersNotSupported = 0xa1,
  WildcardSubscriptionsNotSupported = 0xa2,
}

/** Packet kinds that carry a reason code. */
export type ReasonPacket =
  | 'connack' | 'puback' | 'pubrec' | 'pubrel' | 'pubcomp' | 'suback' | 'unsuback' | 'disconnect' | 'auth';

const C: ReasonPacket = 'connack';
const PA: ReasonPacket = 'puback';
const PR: ReasonPacket = 'pubrec';
const PL: ReasonPacket = 'pubrel';
const PC: ReasonPacket = 'pubcomp';
const SA: ReasonPacket = 'suback';
const UA: ReasonPacket = 'unsuback';
const D: ReasonPacket = 'disconnect';
const AU: ReasonPacket = 'auth';

/** Name and the packets allowed to carry each code (MQTT 5.0 Table 2-6). */
export const reasonCodeInfo: Readonly<Record<ReasonCode, { name: string; packets: readonly ReasonPacket[] }>> = {
  [ReasonCode.Success]: { name: 'Success', packets: [C, PA, PR, PL, PC, UA, AU, D, SA] },
  [ReasonCode.GrantedQos1]: { name: 'Granted QoS 1', packets: [SA] },
  [ReasonCode.GrantedQos2]: { name: 'Granted QoS 2', packets: [SA] },
  [ReasonCode.DisconnectWithWillMessage]: { name: 'Disconnect with Will Message', packets: [D] },
  [ReasonCode.NoMatchingSubscribers]: { name: 'No matching subscribers', packets: [PA, PR] },
  [ReasonCode.NoSubscriptionExisted]: { name: 'No subscription existed', packets: [UA] },
  [ReasonCode.ContinueAuthentication]: { name: 'Continue authentication', packets: [AU] },
  [ReasonCode.ReAuthenticate]: { name: 'Re-authenticate', packets: [AU] },
  [ReasonCode.UnspecifiedError]: { name: 'Unspecified error', packets: [C, PA, PR, SA, UA, D] },
  [ReasonCode.MalformedPacket]: { name: 'Malformed Packet', packets: [C, D] },
  [ReasonCode.ProtocolError]: { name: 'Protocol Error', packets: [C, D] },
  [ReasonCode.ImplementationSpecificError]: { name: 'Implementation specific error', packets: [C, PA, PR, SA, UA, D] },
  [ReasonCode.UnsupportedProtocolVersion]: { name: 'Unsupported Protocol Version', packets: [C] },
  [ReasonCode.ClientIdentifierNotValid]: { name: 'Client Identifier not valid', packets: [C] },
  [ReasonCode.BadUserNameOrPassword]: { name: 'Bad User Name or Password', packets: [C] },
  [ReasonCode.NotAuthorized]: { name: 'Not authorized', packets: [C, PA, PR, SA, UA, D] },
  [ReasonCode.ServerUnavailable]: { name: 'Server unavailable', packets: [C] },
  [ReasonCode.ServerBusy]: { name: 'Server busy', packets: [C, D] },
  [ReasonCode.Banned]: { name: 'Banned', packets: [C] },
  [ReasonCode.ServerShuttingDown]: { name: 'Server shutting down', packets: [D] },
  [ReasonCode.BadAuthenticationMethod]: { name: 'Bad authentication method', packets: [C, D] },
  [ReasonCode.KeepAliveTimeout]: { name: 'Keep Alive timeout', packets: [D] },
  [ReasonCode.SessionTakenOver]: { name: 'Session taken over', packets: [D] },
  [ReasonCode.TopicFilterInvalid]: { name: 'Topic Filter invalid', packets: [SA, UA, D] },
  [ReasonCode.TopicNameInvalid]: { name: 'Topic Name invalid', packets: [C, PA, PR, D] },
  [ReasonCode.PacketIdentifierInUse]: { name: 'Packet Identifier in use', packets: [PA, PR, SA, UA] },
  [ReasonCode.PacketIdentifierNotFound]: { name: 'Packet Identifier not found', packets: [PL, PC] },
  [ReasonCode.ReceiveMaximumExceeded]: { name: 'Receive Maximum exceeded', packets: [D] },
  [ReasonCode.TopicAliasInvalid]: { name: 'Topic Alias invalid', packets: [D] },
  [ReasonCode.PacketTooLarge]: { name: 'Packet too large', packets: [C, D] },
  [ReasonCode.MessageRateTooHigh]: { name: 'Message rate too high', packets: [D] },
  [ReasonCode.QuotaExceeded]: { name: 'Quota exceeded', packets: [C, PA, PR, SA, D] },
  [ReasonCode.AdministrativeAction]: { name: 'Administrative action', packets: [D] },
  [ReasonCode.PayloadFormatInvalid]: { name: 'Payload format invalid', packets: [C, PA, PR, D] },
  [ReasonCode.RetainNotSupported]: { name: 'Retain not supported', packets: [C, D] },
  [ReasonCode.QosNotSupported]: { name: 'QoS not supported', packets: [C, D] },
  [ReasonCode.UseAnotherServer]: { name: 'Use another server', packets: [C, D] },
  [ReasonCode.ServerMoved]: { name: 'Server moved', packets: [C, D] },
  [ReasonCode.SharedSubscriptionsNotSupported]: { name: 'Shared Subscriptions not supported', packets: [SA, D] },
  [ReasonCode.ConnectionRateExceeded]: { name: 'Connection rate exceeded', packets: [C, D] },
  [ReasonCode.MaximumConnectTime]: { name: 'Maximum connect time', packets: [D] },
  [ReasonCode.SubscriptionIdentifiersNotSupported]: { name: 'Subscription Identifiers not supported', packets: [SA, D] },
  [ReasonCode.WildcardSubscriptionsNotSupported]: { name: 'Wildcard Subscriptions not supported', packets: [SA, D] },
};

/** Codes a CONNACK may carry. */
export type ConnackReasonCode =
  | ReasonCode.Success | ReasonCode.UnspecifiedError | ReasonCode.MalformedPacket | ReasonCode.ProtocolError
  | ReasonCode.ImplementationSpecificError | ReasonCode.UnsupportedProtocolVersion | ReasonCode.ClientIdentifierNotValid
  | ReasonCode.BadUserNameOrPassword | ReasonCode.NotAuthorized | ReasonCode.ServerUnavailable | ReasonCode.ServerBusy
  | ReasonCode.Banned | ReasonCode.BadAuthenticationMethod | ReasonCode.TopicNameInvalid | ReasonCode.PacketTooLarge
  | ReasonCode.QuotaExceeded | ReasonCode.PayloadFormatInvalid | ReasonCode.RetainNotSupported | ReasonCode.QosNotSupported
  | ReasonCode.UseAnotherServer | ReasonCode.ServerMoved | ReasonCode.ConnectionRateExceeded;

/** Codes a PUBACK or PUBREC may carry. */
export type PubAckReasonCode =
  | ReasonCode.Success | ReasonCode.NoMatchingSubscribers | ReasonCode.UnspecifiedError
  | ReasonCode.ImplementationSpecificError | ReasonCode.NotAuthorized | ReasonCode.TopicNameInvalid
  | ReasonCode.PacketIdentifierInUse | ReasonCode.QuotaExceeded | ReasonCode.PayloadFormatInvalid;

/** Codes a PUBREL or PUBCOMP may carry. */
export type PubRelReasonCode = ReasonCode.Success | ReasonCode.PacketIdentifierNotFound;

/** Codes a SUBACK may carry per topic filter. */
export type SubAckReasonCode =
  | ReasonCode.Success | ReasonCode.GrantedQos1 | ReasonCode.GrantedQos2 | ReasonCode.UnspecifiedError
  | ReasonCode.ImplementationSpecificError | ReasonCode.NotAuthorized | ReasonCode.TopicFilterInvalid
  | ReasonCode.PacketIdentifierInUse | ReasonCode.QuotaExceeded | ReasonCode.SharedSubscriptionsNotSupported
  | ReasonCode.SubscriptionIdentifiersNotSupported | ReasonCode.WildcardSubscriptionsNotSupported;

/** Codes an UNSUBACK may carry per topic filter. */
export type UnsubAckReasonCode =
  | ReasonCode.Success | ReasonCode.NoSubscriptionExisted | ReasonCode.UnspecifiedError
  | ReasonCode.ImplementationSpecificError | ReasonCode.NotAuthorized | ReasonCode.TopicFilterInvalid
  | ReasonCode.PacketIdentifierInUse;

/** 3.1.1 CONNACK return codes (§3.2.2.3). */
export enum V3ConnackReturnCode {
  Accepted = 0,
  UnacceptableProtocolVersion = 1,
  IdentifierRejected = 2,
  ServerUnavailable = 3,
  BadUserNameOrPassword = 4,
  NotAuthorized = 5,
}

/** Downgrade a v5 CONNACK reason code to the closest 3.1.1 return code. */
export function toV3ConnackReturnCode(rc: ConnackReasonCode): V3ConnackReturnCode {
  switch (rc) {
    case ReasonCode.Success:
      return V3ConnackReturnCode.Accepted;
    case ReasonCode.UnsupportedProtocolVersion:
      return V3ConnackReturnCode.UnacceptableProtocolVersion;
    case ReasonCode.ClientIdentifierNotValid:
      return V3ConnackReturnCode.IdentifierRejected;
    case ReasonCode.BadUserNameOrPassword:
    case ReasonCode.BadAuthenticationMethod:
      return V3ConnackReturnCode.BadUserNameOrPassword;
    case ReasonCode.NotAuthorized:
    case ReasonCode.Banned:
      return V3ConnackReturnCode.NotAuthorized;
    default:
      return V3ConnackReturnCode.ServerUnavailable;
  }
}

/** Human-readable name of a reason code, for logs and reason strings. */
export function reasonCodeName(rc: number): string {
  return (reasonCodeInfo as Record<number, { name: string } | undefined>)[rc]?.name ?? `0x${rc.toString(16)}`;
}

/** True for codes ≥ 0x80, which signal failure. */
export function isFailure(rc: number): boolean {
  return rc >= 0x80;
}
