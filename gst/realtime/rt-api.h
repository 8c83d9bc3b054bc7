/* gst-phone-agent: export macro for the realtime protocol library */
#pragma once

#if defined(BUILDING_PHONEAGENT_REALTIME)
#define RT_API __attribute__((visibility("default")))
#else
#define RT_API
#endif
